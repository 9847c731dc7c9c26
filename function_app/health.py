"""HTTP triggers: liveness (``GET /api/health``, public, detail-free) and readiness with each dependency's
state (``GET /api/internal/ready``, for probes and operators; the ingress does not expose ``/api/internal``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import azure.functions as func

from function_app.problems import json_response, problem
from orders.bootstrap import OrderService, order_service

CHECK_TIMEOUT_SECONDS = 3.0

blueprint = func.Blueprint()


async def _outcome(check: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:.0f}s"
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:300]
    return "ok"


async def check_dependencies(svc: OrderService) -> dict[str, str]:
    broker, sql, redis = await asyncio.gather(
        _outcome(svc.check_broker()), _outcome(svc.check_sql()), _outcome(svc.check_redis()))
    return {"broker": broker, "sql": sql, "redis": redis}


@blueprint.function_name("health")
@blueprint.route(route="health", methods=["GET"])
async def health(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"status": "ok"})


@blueprint.function_name("readiness")
@blueprint.route(route="internal/ready", methods=["GET"])
async def readiness(req: func.HttpRequest) -> func.HttpResponse:
    checks = await check_dependencies(order_service())
    down = sorted(name for name, result in checks.items() if result != "ok")
    if down:
        return problem(503, "Not ready", f"not answering: {', '.join(down)}", kind="not-ready", checks=checks)
    return json_response({"status": "ready", "checks": checks})
