"""Riding out transient failures inside a trigger: pauses on the event loop, bounded by a budget."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time

import pytest

from function_app.retries import RetryPolicy, retrying_transient_errors
from orders.domain.errors import TransientError

QUICK = RetryPolicy(budget_seconds=1.0, base_seconds=0.05, max_seconds=0.2)


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientError("SQL unavailable")
        return "done"


async def test_work_that_recovers_within_the_budget_succeeds_in_the_same_delivery() -> None:
    work = Flaky(failures=3)

    result = await retrying_transient_errors(work, delivery_count=1, correlation_id="c", policy=QUICK)

    assert (result, work.calls) == ("done", 4)


async def test_when_the_budget_runs_out_the_error_goes_to_the_host_well_before_the_budget_ends() -> None:
    work = Flaky(failures=10_000)
    started = time.monotonic()

    with pytest.raises(TransientError, match="SQL unavailable"):
        await retrying_transient_errors(work, delivery_count=1, correlation_id="c", policy=QUICK)

    assert time.monotonic() - started <= QUICK.budget_seconds + 0.1
    assert work.calls >= 4


async def test_an_attempt_still_waiting_for_a_thread_at_the_end_of_the_budget_is_dropped() -> None:
    """Every thread of the loop's executor is stuck: the invocation still ends within its budget."""
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(pool)
    blocker = loop.run_in_executor(None, time.sleep, 2)
    started = time.monotonic()

    with pytest.raises(TransientError, match="retry budget ran out"):
        await retrying_transient_errors(lambda: "never", delivery_count=1, correlation_id="c",
                                        policy=RetryPolicy(budget_seconds=0.3, base_seconds=0.5, max_seconds=0.5))

    assert time.monotonic() - started < 1.0
    await blocker


async def test_pauses_hold_no_thread_so_64_sessions_share_two_threads() -> None:
    """64 invocations pausing at once on a loop with two threads: all recover as soon as the work does."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    recovered_at = time.monotonic() + 0.5

    def work() -> str:
        if time.monotonic() < recovered_at:
            raise TransientError("SQL unavailable")
        return "done"

    policy = RetryPolicy(budget_seconds=5.0, base_seconds=0.1, max_seconds=0.2)
    results = await asyncio.gather(*(retrying_transient_errors(work, delivery_count=1, correlation_id=str(n),
                                                               policy=policy) for n in range(64)))

    assert results == ["done"] * 64
    assert time.monotonic() - recovered_at < 1.0


async def test_a_later_delivery_starts_with_the_longer_pauses(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(budget_seconds=5.0, base_seconds=0.01, max_seconds=1.0)
    with caplog.at_level(logging.WARNING, logger="function_app"):
        await retrying_transient_errors(Flaky(failures=1), delivery_count=4, correlation_id="c-4", policy=policy)

    (record,) = caplog.records
    assert "retrying in 0.1s" in record.getMessage()  # 0.01 s doubled for each of the three earlier deliveries
    assert (record.correlationId, record.deliveryCount) == ("c-4", 4)


def test_settings_are_read_from_the_environment_and_bad_values_say_what_to_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSING_RETRY_BUDGET_SECONDS", "60")
    monkeypatch.setenv("PROCESSING_RETRY_MAX_SECONDS", "5")
    assert RetryPolicy.from_environment() == RetryPolicy(budget_seconds=60, base_seconds=2, max_seconds=5)

    monkeypatch.setenv("PROCESSING_RETRY_BASE_SECONDS", "soon")
    with pytest.raises(ValueError, match="PROCESSING_RETRY_BASE_SECONDS='soon' is not a number of seconds"):
        RetryPolicy.from_environment()
