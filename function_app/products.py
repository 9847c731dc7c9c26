"""HTTP trigger: the catalog (``GET /api/products``), for any signed-in caller."""

from __future__ import annotations

import azure.functions as func

from function_app.callers import authenticate
from function_app.http_errors import problem_for
from function_app.problems import json_response
from orders.bootstrap import order_service
from orders.domain.callers import ensure_may_browse
from orders.json_contracts import product_json

blueprint = func.Blueprint()


@blueprint.function_name("list_products")
@blueprint.route(route="products", methods=["GET"])
async def list_products(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = order_service()
        ensure_may_browse(await authenticate(req, svc))
        products = await svc.list_products()
    except Exception as error:
        return problem_for(error)
    return json_response([product_json(product) for product in products])
