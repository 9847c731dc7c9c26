"""HTTP trigger: ``GET /api/health``, the broker, SQL and Redis each checked within a short timeout."""

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
    checks = await check_dependencies(order_service())
    down = sorted(name for name, result in checks.items() if result != "ok")
    if down:
        return problem(503, "Unhealthy", f"not answering: {', '.join(down)}", kind="unhealthy", checks=checks)
    return json_response({"status": "healthy", "checks": checks})
