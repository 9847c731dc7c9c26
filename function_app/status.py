"""HTTP trigger: an order's status (``GET /api/orders/{correlationId}``), for its customer or an operator."""

from __future__ import annotations

import azure.functions as func

from function_app.callers import authenticate
from function_app.http_errors import problem_for
from function_app.problems import json_response
from orders.bootstrap import order_service
from orders.json_contracts import status_json
from orders.validation import parse_correlation_id, parse_receipt

blueprint = func.Blueprint()


@blueprint.function_name("get_order_status")
@blueprint.route(route="orders/{correlationId}", methods=["GET"])
async def get_order_status(req: func.HttpRequest) -> func.HttpResponse:
    correlation_id = None
    try:
        svc = order_service()
        caller = await authenticate(req, svc)
        correlation_id = parse_correlation_id(req.route_params.get("correlationId"))
        outcome = await svc.get_order_status(correlation_id, caller, parse_receipt(req.params.get("receipt")))
    except Exception as error:
        return problem_for(error, correlation_id)
    return json_response(status_json(outcome))
