"""HTTP triggers: submit an order, read its status, list products, health."""

from __future__ import annotations

import asyncio

import azure.functions as func

from function_app.health import check_dependencies
from function_app.http_errors import json_body, problem_for
from function_app.problems import json_response, problem
from orders.bootstrap import services
from orders.service_layer import handlers
from orders.validation import parse_correlation_id, parse_idempotency_key, parse_order_body

blueprint = func.Blueprint()


@blueprint.function_name("submit_order")
@blueprint.route(route="orders", methods=["POST"])
async def submit_order(req: func.HttpRequest) -> func.HttpResponse:
    try:
        key = parse_idempotency_key(req.headers.get("idempotency-key"))
        command = parse_order_body(json_body(req)).to_command(key, req.headers.get("traceparent"))
        svc = services()
        accepted = await handlers.submit_order(command, publisher=svc.order_publisher, registry=svc.registry,
                                               clock=svc.clock, options=svc.intake_options)
    except Exception as error:
        return problem_for(error)
    return json_response(accepted.to_json_dict(), 202, {"Location": accepted.status_url})


@blueprint.function_name("get_order_status")
@blueprint.route(route="orders/{correlationId}", methods=["GET"])
async def get_order_status(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = services()
        outcome = await handlers.get_order_status(parse_correlation_id(req.route_params.get("correlationId")),
                                                  uow_factory=svc.uow_factory, registry=svc.registry)
    except Exception as error:
        return problem_for(error)
    return json_response(outcome.to_json_dict())


@blueprint.function_name("list_products")
@blueprint.route(route="products", methods=["GET"])
async def list_products(req: func.HttpRequest) -> func.HttpResponse:
    try:
        products = await asyncio.to_thread(handlers.list_products, uow_factory=services().uow_factory)
    except Exception as error:
        return problem_for(error)
    return json_response([{"sku": p.sku, "name": p.name, "unitPrice": str(p.unit_price), "currency": p.currency,
                           "stock": p.stock} for p in products])


@blueprint.function_name("health")
@blueprint.route(route="health", methods=["GET"])
async def health(req: func.HttpRequest) -> func.HttpResponse:
    checks = await check_dependencies(services())
    down = sorted(name for name, result in checks.items() if result != "ok")
    if down:
        return problem(503, "Unhealthy", f"not answering: {', '.join(down)}", kind="unhealthy", checks=checks)
    return json_response({"status": "healthy", "checks": checks})
