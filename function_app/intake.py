"""HTTP trigger: submit an order (``POST /api/orders``)."""

from __future__ import annotations

import azure.functions as func

from function_app.callers import authenticate
from function_app.http_errors import json_body, problem_for
from function_app.responses import accepted_response
from function_app.telemetry import counted_refusal, timed
from orders.bootstrap import order_service
from orders.validation import parse_idempotency_key, parse_order_body

blueprint = func.Blueprint()


@blueprint.function_name("submit_order")
@blueprint.route(route="orders", methods=["POST"])
@timed
async def submit_order(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = order_service()
        caller = await authenticate(req, svc)
        key = parse_idempotency_key(req.headers.get("idempotency-key"))
        command = parse_order_body(json_body(req)).to_command(caller, key, req.headers.get("traceparent"))
        accepted = await svc.submit_order(command)
    except Exception as error:
        return counted_refusal(problem_for(error))
    return accepted_response(accepted, svc.settings.notify_public_url)
