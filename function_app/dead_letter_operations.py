"""HTTP triggers for operators (app role ``Orders.Admin``): list, show, replay, repair and discard dead letters."""

from __future__ import annotations

import azure.functions as func

from function_app.callers import authenticate
from function_app.http_errors import json_body, problem_for
from function_app.problems import json_response
from function_app.responses import status_url
from orders.bootstrap import order_service
from orders.dead_letter_validation import (
    parse_action_body,
    parse_dead_letter_id,
    parse_dead_letter_query,
    parse_repair_body,
)
from orders.json_contracts import dead_letter_detail_json, dead_letter_json
from orders.service_layer.dead_letters import Replayed

blueprint = func.Blueprint()


@blueprint.function_name("list_dead_letters")
@blueprint.route(route="dead-letters", methods=["GET"])
async def list_dead_letters(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = order_service()
        caller = await authenticate(req, svc)
        criteria = parse_dead_letter_query(req.params)
        found = await svc.list_dead_letters(caller, criteria)
    except Exception as error:
        return problem_for(error)
    next_after = found[-1].id if len(found) == criteria.limit else None
    return json_response({"deadLetters": [dead_letter_json(dead_letter) for dead_letter in found],
                          "nextAfter": next_after})


@blueprint.function_name("show_dead_letter")
@blueprint.route(route="dead-letters/{id}", methods=["GET"])
async def show_dead_letter(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = order_service()
        caller = await authenticate(req, svc)
        detail = await svc.show_dead_letter(caller, parse_dead_letter_id(req.route_params.get("id")))
    except Exception as error:
        return problem_for(error)
    return json_response(dead_letter_detail_json(detail.dead_letter, detail.actions, detail.order))


@blueprint.function_name("replay_dead_letter")
@blueprint.route(route="dead-letters/{id}/replay", methods=["POST"])
async def replay_dead_letter(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = order_service()
        caller = await authenticate(req, svc)
        dead_letter_id = parse_dead_letter_id(req.route_params.get("id"))
        replayed = await svc.replay_dead_letter(caller, dead_letter_id, parse_action_body(json_body(req)).why)
    except Exception as error:
        return problem_for(error)
    return _replayed_response(replayed)


@blueprint.function_name("repair_dead_letter")
@blueprint.route(route="dead-letters/{id}/repair", methods=["POST"])
async def repair_dead_letter(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = order_service()
        caller = await authenticate(req, svc)
        dead_letter_id = parse_dead_letter_id(req.route_params.get("id"))
        body = parse_repair_body(json_body(req))
        replayed = await svc.replay_dead_letter(caller, dead_letter_id, body.why, body.repaired())
    except Exception as error:
        return problem_for(error)
    return _replayed_response(replayed)


@blueprint.function_name("discard_dead_letter")
@blueprint.route(route="dead-letters/{id}/discard", methods=["POST"])
async def discard_dead_letter(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = order_service()
        caller = await authenticate(req, svc)
        dead_letter_id = parse_dead_letter_id(req.route_params.get("id"))
        discarded = await svc.discard_dead_letter(caller, dead_letter_id, parse_action_body(json_body(req)).why)
    except Exception as error:
        return problem_for(error)
    return json_response(dead_letter_json(discarded))


def _replayed_response(replayed: Replayed) -> func.HttpResponse:
    """``202`` when this request sent the order (again), ``200`` when an earlier replay stands as it is."""
    payload = {"deadLetterId": replayed.dead_letter_id, "correlationId": replayed.correlation_id,
               "attempt": replayed.attempt, "started": replayed.started, "sent": replayed.sent,
               "statusUrl": status_url(replayed.correlation_id)}
    return json_response(payload, 202 if replayed.sent else 200)
