"""Riding out transient failures (SQL, the broker) inside a Service Bus trigger without holding a thread.

Service Bus redelivers an abandoned message at once, so a database outage would burn through
MaxDeliveryCount in seconds and dead-letter good orders. So a trigger retries the work itself first, with
growing pauses, and gives the message back only after a budget:

- The triggers are ``async``: a pause is ``asyncio.sleep`` on the worker's event loop and takes no thread.
  The work runs in a thread of the loop's default executor only while it runs. (With the old synchronous
  trigger every pause held one of the worker's ``min(32, cores + 4)`` threads: 64 session slots on a
  2-core pod queued behind 6 sleeping threads until ``functionTimeout`` failed them.)
- Each invocation stops retrying after ``PROCESSING_RETRY_BUDGET_SECONDS`` (an attempt still waiting for a
  thread then is dropped) and raises, so the host abandons the message well inside ``functionTimeout``
  and within the lock renewal (``maxAutoLockRenewalDuration``). The session's next delivery starts where
  this one stopped, with the longer pauses.
- The session stays locked meanwhile, so the customer's later orders wait behind it: FIFO holds.

With the defaults (4 min budget, pauses of 2 s doubling to 30 s) and MaxDeliveryCount 10, an order is
dead-lettered only after about 38 minutes of continuous outage (bench/sql_outage_bench.py; figures in
docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from orders.domain.errors import TransientError
from service_platform.backoff import exponential_delay

log = logging.getLogger("function_app")
T = TypeVar("T")

BUDGET_SETTING = "PROCESSING_RETRY_BUDGET_SECONDS"
BASE_SETTING = "PROCESSING_RETRY_BASE_SECONDS"
MAX_SETTING = "PROCESSING_RETRY_MAX_SECONDS"


@dataclass(frozen=True)
class RetryPolicy:
    budget_seconds: float = 240.0
    base_seconds: float = 2.0
    max_seconds: float = 30.0

    @classmethod
    def from_environment(cls) -> RetryPolicy:
        def number(name: str, default: float) -> float:
            text = os.environ.get(name, "").strip()
            if not text:
                return default
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a number of seconds; set it to e.g. {default:g}") from None
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {text}")
            return value

        defaults = cls()
        return cls(number(BUDGET_SETTING, defaults.budget_seconds), number(BASE_SETTING, defaults.base_seconds),
                   number(MAX_SETTING, defaults.max_seconds))

    def pause(self, attempt: int) -> float:
        return exponential_delay(attempt, base=self.base_seconds, cap=self.max_seconds)


_policy: RetryPolicy | None = None


def retry_policy() -> RetryPolicy:
    """The process's policy, read from the app settings on first use."""
    global _policy
    if _policy is None:
        _policy = RetryPolicy.from_environment()
    return _policy


async def retrying_transient_errors(
    work: Callable[[], T], *, delivery_count: int | None, correlation_id: str | None,
    policy: RetryPolicy | None = None,
) -> T:
    """Run ``work`` in a thread; on :class:`TransientError` pause and retry until the budget is spent, then raise."""
    policy = policy or retry_policy()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.budget_seconds
    # Later deliveries of the same message start with the longer pauses.
    attempt = max(0, (delivery_count or 1) - 1)
    fields = {"correlationId": correlation_id, "deliveryCount": delivery_count}
    while True:
        remaining = deadline - loop.time()
        try:
            # Not started by the deadline (all threads busy): dropped, like an attempt that failed.
            return await asyncio.wait_for(asyncio.to_thread(work), timeout=max(remaining, 0.001))
        except TimeoutError:
            error: Exception = TransientError("the retry budget ran out while an attempt was still waiting or running")
        except TransientError as failure:
            error = failure
        pause = policy.pause(attempt)
        attempt += 1
        if loop.time() + pause >= deadline:
            log.warning("transient failure; giving the message back to the broker after %.0fs of retries: %s",
                        policy.budget_seconds, error, extra=fields)
            raise error
        log.warning("transient failure, retrying in %.1fs: %s", pause, error, extra=fields)
        await asyncio.sleep(pause)
