"""What the function app measures around its triggers: invocation durations and the intake's refusals."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import azure.functions as func

from orders.adapters.order_metrics import OrderMetrics

P = ParamSpec("P")
R = TypeVar("R")

_metrics = OrderMetrics()
_REFUSED_FOR_LOAD = (429, 503)


def timed(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Record the invocation's duration (``orders.invocation.duration``) under the function's name.

    ``functools.wraps`` keeps the signature and annotations the worker reads the bindings from.
    """
    name = function.__name__

    @functools.wraps(function)
    async def invocation(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        succeeded = False
        try:
            result = await function(*args, **kwargs)
            succeeded = True
            return result
        finally:
            _metrics.invocation(name, time.perf_counter() - started, succeeded=succeeded)

    return invocation


def counted_refusal(response: func.HttpResponse) -> func.HttpResponse:
    """``response``, counted in ``orders.intake.refused`` when it refuses an order for load (429, 503)."""
    if response.status_code in _REFUSED_FOR_LOAD:
        _metrics.refused(response.status_code)
    return response
