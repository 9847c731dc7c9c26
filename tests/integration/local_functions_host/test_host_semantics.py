"""The Functions host's semantics the local host reproduces, beyond plain invocation (docs/local-functions-host.md
has the table with their sources): functionTimeout, drain on Kubernetes, autoCompleteMessages false, the
worker's thread pool size and the worker process count. Real host processes, a real local broker."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from localbus.embedded import RunningBroker, running_broker
from tests.local_host_apps.harness import HostProcess, copy_app
from tests.waiting import wait_until

LOCK_SECONDS = 4
QUEUES = {"queues": [
    {"name": name, "maxDeliveryCount": 3, "lockDuration": f"PT{LOCK_SECONDS}S"}
    for name in ("timeout-plain", "manual-plain", "k8s-plain", "timeout-batch", "manual-batch", "k8s-batch",
                 "prefetch-0-plain", "prefetch-0-batch", "prefetch-10-plain", "prefetch-10-batch")
] + [
    {"name": name, "requiresSession": True, "maxDeliveryCount": 3, "lockDuration": f"PT{LOCK_SECONDS}S"}
    for name in ("timeout-work", "manual-work", "k8s-work", "prefetch-0-work", "prefetch-10-work")
]}


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    with running_broker(QUEUES) as running:
        yield running


def servicebus_host(tmp_path: Path, broker: RunningBroker, prefix: str, **env: str) -> tuple[HostProcess, Path]:
    records = tmp_path / "records"
    records.mkdir()
    app = copy_app("servicebus_app", tmp_path, values={
        "ServiceBusConnection": broker.connection_string, "WORK_QUEUE": f"{prefix}-work",
        "PLAIN_QUEUE": f"{prefix}-plain", "BATCH_QUEUE": f"{prefix}-batch"})
    return HostProcess(app, env={"RECORD_DIR": str(records), **env}), records


def send(broker: RunningBroker, queue: str, *bodies: tuple[str, dict[str, Any]]) -> None:
    with ServiceBusClient.from_connection_string(broker.connection_string) as client, \
            client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(json.dumps(body), message_id=mid) for mid, body in bodies])


def read(records: Path, function: str, prefix: str) -> list[dict[str, Any]]:
    path = records / f"{function}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [row for row in rows if row["message_id"].startswith(prefix)]


def test_function_timeout_fails_the_invocation_abandons_its_message_and_restarts_the_worker(
        tmp_path: Path, broker: RunningBroker) -> None:
    """As the Functions host: past functionTimeout the invocation fails, its message goes back to the broker
    (delivered again, here until MaxDeliveryCount), and the worker restart ends the invocations beside it."""
    run = uuid.uuid4().hex[:8]
    host, records = servicebus_host(tmp_path, broker, "timeout", AzureFunctionsJobHost__functionTimeout="00:00:03")
    with host:
        send(broker, "timeout-plain", (f"{run}-stuck", {"action": "sleep", "seconds": 30}))
        wait_until(lambda: read(records, "process_plain", f"{run}-stuck"), what="the stuck invocation")
        time.sleep(1.5)
        # Would finish after 2.15 s, within its own timeout, but the restart at the first one's 3 s ends it.
        # Redelivered with the stuck one, it finishes before that one's next restart: about 0.65 s of margin
        # on either side, so neither a slow start nor a fast redelivery decides the outcome.
        send(broker, "timeout-plain", (f"{run}-beside", {"action": "sleep", "seconds": 2.15}))

        beside = wait_until(lambda: [r for r in read(records, "process_plain", f"{run}-beside") if r["phase"] == "end"],
                            what="the invocation beside it to complete on its next delivery")
        stuck = wait_until(lambda: [r for r in read(records, "process_plain", f"{run}-stuck")
                                    if r["phase"] == "start" and r["delivery_count"] == 3],
                           what="the stuck message's third delivery")
        messages = [r["message"] for r in host.log_records()]

    assert beside[0]["delivery_count"] == 2, "the invocation beside the timed-out one failed with the worker"
    assert stuck, "the timed-out message was abandoned and delivered again"
    assert any("Timeout value of 00:00:03 exceeded by function 'Functions.process_plain'" in m for m in messages)
    assert any("restarting the worker: 1 other invocation(s) in it fail too" in m for m in messages)
    assert not [r for r in read(records, "process_plain", f"{run}-stuck") if r["phase"] == "end"]


def test_with_auto_complete_off_a_failure_is_still_abandoned_and_a_success_is_left_unsettled(
        tmp_path: Path, broker: RunningBroker) -> None:
    """autoCompleteMessages=false: the host completes nothing (the function would settle through
    ServiceBusMessageActions), but it abandons on an exception all the same, so the retry is immediate."""
    run = uuid.uuid4().hex[:8]
    host, records = servicebus_host(tmp_path, broker, "manual",
                                    AzureFunctionsJobHost__extensions__serviceBus__autoCompleteMessages="false")
    with host:
        send(broker, "manual-plain", (f"{run}-fail", {"action": "fail"}), (f"{run}-ok", {"action": "ok"}))
        failures = wait_until(lambda: len(read(records, "process_plain", f"{run}-fail")) >= 4 and
                              read(records, "process_plain", f"{run}-fail"), what="the failed message's retry")
        first_ok = wait_until(lambda: [r for r in read(records, "process_plain", f"{run}-ok") if r["phase"] == "end"],
                              what="the successful invocation")
        again = wait_until(lambda: [r for r in read(records, "process_plain", f"{run}-ok")
                                    if r["phase"] == "start" and r["delivery_count"] == 2],
                           timeout=LOCK_SECONDS + 10, what="the unsettled message after its lock expired")

    raises = [r for r in failures if r["phase"] == "raise"]
    retry = [r for r in failures if r["phase"] == "start" and r["delivery_count"] == 2]
    assert retry[0]["at"] - raises[0]["at"] < LOCK_SECONDS / 2, "abandoned at once, not left for the lock to expire"
    assert again[0]["at"] - first_ok[0]["at"] >= LOCK_SECONDS - 1.5, "never completed: back only after its lock"


def test_on_kubernetes_sigterm_drains_for_the_hosts_ten_seconds(tmp_path: Path, broker: RunningBroker) -> None:
    """With KUBERNETES_SERVICE_HOST set the Functions host's stop waits at most 10 s for invocations."""
    run = uuid.uuid4().hex[:8]
    host, records = servicebus_host(tmp_path, broker, "k8s", KUBERNETES_SERVICE_HOST="10.0.0.1")
    host.start()
    try:
        send(broker, "k8s-plain", (f"{run}-long", {"action": "sleep", "seconds": 60}))
        wait_until(lambda: read(records, "process_plain", f"{run}-long"), what="the long invocation")
        started = time.monotonic()
        code = host.stop(signal.SIGTERM, timeout=30)
        elapsed = time.monotonic() - started
    finally:
        host.kill()

    assert code == 0
    assert 9 <= elapsed < 16, f"stopped after {elapsed:.1f}s"
    assert any("still running after 10s" in r["message"] for r in host.log_records())


@pytest.mark.parametrize(("setting", "parallel"), [(None, True), ("1", False)])
def test_the_worker_thread_pool_follows_python_threadpool_thread_count(
        tmp_path: Path, setting: str | None, parallel: bool) -> None:
    """Synchronous functions share the worker's pool: min(32, cores + 4) threads by default (at least 5),
    one when PYTHON_THREADPOOL_THREAD_COUNT=1, so three one-second calls then take three seconds."""
    app = copy_app("http_app", tmp_path, values={"PYTHON_THREADPOOL_THREAD_COUNT": setting} if setting else {})
    with HostProcess(app) as host:
        answers: list[int] = []

        def call() -> None:
            with httpx.Client(base_url=host.base_url, timeout=30) as http:
                answers.append(http.get("/api/slow_sync", params={"seconds": "1"}).status_code)

        callers = [threading.Thread(target=call) for _ in range(3)]
        started = time.monotonic()
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(20)
        elapsed = time.monotonic() - started

    assert answers == [200, 200, 200]
    if parallel:
        assert elapsed < 2.5, f"three calls took {elapsed:.1f}s with the default pool"
    else:
        assert elapsed >= 3, f"three calls took {elapsed:.1f}s with one thread"


def test_more_than_one_worker_process_is_reported_as_not_applied(tmp_path: Path) -> None:
    app = copy_app("http_app", tmp_path, values={"FUNCTIONS_WORKER_PROCESS_COUNT": "4"})
    with HostProcess(app) as host:
        assert httpx.get(f"{host.base_url}/api/echo/x", timeout=10).status_code == 200
        warnings = [r["message"] for r in host.log_records() if r["level"] == "WARNING"]

    assert any("FUNCTIONS_WORKER_PROCESS_COUNT=4" in m and "one worker" in m for m in warnings)


@pytest.mark.parametrize(("prefetch", "locked"), [(0, 1), (10, 5)])
def test_prefetched_messages_are_locked_ahead_of_their_invocation(
        tmp_path: Path, broker: RunningBroker, prefetch: int, locked: int) -> None:
    """prefetchCount: the receiver takes (and the broker locks) that many messages ahead of the function,
    as the SDK's processor does; with 0 only the message being handled is locked."""
    run = uuid.uuid4().hex[:8]
    queue = f"prefetch-{prefetch}"
    host, records = servicebus_host(
        tmp_path, broker, f"prefetch-{prefetch}",
        AzureFunctionsJobHost__extensions__serviceBus__prefetchCount=str(prefetch),
        AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentCalls="1")
    with host:
        send(broker, f"{queue}-plain", *((f"{run}-{n}", {"action": "sleep", "seconds": 3}) for n in range(5)))
        wait_until(lambda: read(records, "process_plain", run), what="the first invocation")
        time.sleep(0.5)
        stats = broker.stats()[f"{queue}-plain"]
        started = [r for r in read(records, "process_plain", run) if r["phase"] == "start"]

    assert len(started) == 1, "one invocation at a time"
    assert stats["locked"] == locked, stats
