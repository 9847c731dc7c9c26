"""Dependency checks for ``GET /api/health``: the broker, SQL and Redis, each within a short timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from orders.bootstrap import Services

CHECK_TIMEOUT_SECONDS = 3.0


async def _outcome(check: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:.0f}s"
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:300]
    return "ok"


async def check_dependencies(svc: Services) -> dict[str, str]:
    broker, sql, redis = await asyncio.gather(
        _outcome(svc.order_publisher.check()),
        _outcome(asyncio.to_thread(svc.check_sql)),
        _outcome(svc.registry.ping()),
    )
    return {"broker": broker, "sql": sql, "redis": redis}
