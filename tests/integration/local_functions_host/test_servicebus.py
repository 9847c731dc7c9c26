"""The local Functions host driving Service Bus triggers against the local broker.

A real host process runs the sample app in tests/local_host_apps/servicebus_app; its functions append
what they receive to JSON-lines files, which these tests read. Messages go through the real broker
(localbus) with the real azure-servicebus client.
"""

from __future__ import annotations

import datetime
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from localbus.embedded import RunningBroker, broker_process, running_broker
from local_functions_host.binding_data import SINGLE_MESSAGE_NAMES
from tests.local_host_apps.harness import HostProcess, copy_app
from tests.waiting import wait_until

LOCK_SECONDS = 4  # short, so that tests about locks are quick, but above the renewer's 1 s polling
QUEUES = {
    "queues": [
        {"name": "work", "requiresSession": True, "maxDeliveryCount": 3, "lockDuration": f"PT{LOCK_SECONDS}S"},
        {"name": "plain", "maxDeliveryCount": 3, "lockDuration": f"PT{LOCK_SECONDS}S"},
        {"name": "drain-work", "requiresSession": True, "maxDeliveryCount": 3, "lockDuration": "PT30S"},
        {"name": "drain-plain", "maxDeliveryCount": 3, "lockDuration": "PT30S"},
        {"name": "batch", "maxDeliveryCount": 3, "lockDuration": f"PT{LOCK_SECONDS}S"},
        {"name": "drain-batch", "maxDeliveryCount": 3, "lockDuration": "PT30S"},
        {"name": "long-session", "requiresSession": True, "maxDeliveryCount": 3, "lockDuration": f"PT{LOCK_SECONDS}S"},
        {"name": "few-slots", "requiresSession": True, "maxDeliveryCount": 3, "lockDuration": f"PT{LOCK_SECONDS}S"},
    ]
}

Records = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    with running_broker(QUEUES) as running:
        yield running


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servicebus")


@pytest.fixture(scope="module")
def record_dir(workdir: Path) -> Path:
    path = workdir / "records"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def app_dir(workdir: Path, broker: RunningBroker) -> Path:
    return copy_app(
        "servicebus_app",
        workdir,
        values={"ServiceBusConnection": broker.connection_string, "WORK_QUEUE": "work", "PLAIN_QUEUE": "plain",
                "BATCH_QUEUE": "batch"},
    )


@pytest.fixture(scope="module")
def host(app_dir: Path, record_dir: Path) -> Iterator[HostProcess]:
    with HostProcess(app_dir, env={"RECORD_DIR": str(record_dir)}) as running:
        yield running


@pytest.fixture(scope="module")
def sb_client(broker: RunningBroker) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        yield client


@pytest.fixture(scope="module")
def send(sb_client: ServiceBusClient) -> Iterator[Callable[..., None]]:
    senders: dict[str, Any] = {}

    def send_to(queue: str, *messages: ServiceBusMessage) -> None:
        if queue not in senders:
            senders[queue] = sb_client.get_queue_sender(queue)
        senders[queue].send_messages(list(messages))

    yield send_to
    for sender in senders.values():
        sender.close()


@pytest.fixture
def records(record_dir: Path) -> Records:
    def read(function: str, prefix: str, *, phase: str | None = None) -> list[dict[str, Any]]:
        path = record_dir / f"{function}.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [
            row for row in rows
            if row["message_id"].startswith(prefix) and (phase is None or row["phase"] == phase)
        ]

    return read


def message(action: str, message_id: str, *, session_id: str | None = None, **kwargs: Any) -> ServiceBusMessage:
    body = {"action": action, **({"seconds": kwargs.pop("seconds")} if "seconds" in kwargs else {})}
    return ServiceBusMessage(json.dumps(body), message_id=message_id, session_id=session_id, **kwargs)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _settled(broker: RunningBroker, queue: str) -> bool:
    stats = broker.stats()[queue]
    return stats["active"] == 0 and stats["locked"] == 0


def _session_messages(broker: RunningBroker, queue: str, session_id: str) -> int:
    return sum(s["messages"] for s in broker.stats()[queue]["sessions"] if s["id"] == session_id)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def intervals_by_message(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    starts = {r["message_id"]: r["at"] for r in rows if r["phase"] == "start"}
    ends = {r["message_id"]: r["at"] for r in rows if r["phase"] == "end"}
    return {mid: (starts[mid], ends[mid]) for mid in ends}


def test_sessions_are_processed_fifo_one_at_a_time_and_in_parallel_across_sessions(
    host: HostProcess, send: Callable[..., None], records: Records
) -> None:
    run = unique("fifo")
    sessions = [f"{run}-s{n}" for n in range(6)]
    for index in range(3):
        send("work", *(message("sleep", f"{s}-{index}", session_id=s, seconds=0.25) for s in sessions))

    rows = wait_until(lambda: len(records("process_session", run, phase="end")) == 18 and records("process_session", run),
                      what="18 processed messages")

    intervals = intervals_by_message(rows)
    for session in sessions:
        mine = sorted(((start, end, mid) for mid, (start, end) in intervals.items() if mid.startswith(session + "-")))
        assert [mid for _, _, mid in mine] == [f"{session}-{i}" for i in range(3)], "FIFO within a session"
        for (_, previous_end, _), (next_start, _, _) in zip(mine, mine[1:]):
            assert next_start >= previous_end, "one message at a time within a session"
    session_spans = [
        (min(start for mid, (start, _) in intervals.items() if mid.startswith(s + "-")),
         max(end for mid, (_, end) in intervals.items() if mid.startswith(s + "-")))
        for s in sessions
    ]
    assert 2 <= max_overlap(list(intervals.values())) <= 4, "parallel sessions, at most maxConcurrentSessions"
    assert max_overlap(session_spans) >= 2


def test_return_completes_the_message_once(
    host: HostProcess, broker: RunningBroker, send: Callable[..., None], records: Records
) -> None:
    run = unique("done")
    send("work", message("ok", f"{run}-1", session_id=run))
    send("plain", message("ok", f"{run}-2"))

    wait_until(lambda: len(records("process_session", run, phase="end")) == 1
               and len(records("process_plain", run, phase="end")) == 1, what="both messages processed")

    # Completed messages leave the queue; abandoned ones would be active again, unsettled ones locked.
    wait_until(lambda: _settled(broker, "plain") and not _session_messages(broker, "work", run),
               what="both messages to leave their queues")
    assert [r["delivery_count"] for r in records("process_session", run, phase="start")] == [1]
    assert [r["delivery_count"] for r in records("process_plain", run, phase="start")] == [1]


def test_an_exception_abandons_so_the_broker_redelivers_then_dead_letters_and_the_dlq_trigger_sees_why(
    host: HostProcess, send: Callable[..., None], records: Records
) -> None:
    run = unique("poison")
    send("work", message("fail", f"{run}-bad", session_id=run), message("ok", f"{run}-next", session_id=run))

    dead = wait_until(lambda: records("dead_letters", run), what="the dead-lettered message at the DLQ trigger")

    attempts = records("process_session", f"{run}-bad", phase="start")
    assert [a["delivery_count"] for a in attempts] == [1, 2, 3]
    assert len(records("process_session", f"{run}-bad", phase="raise")) == 3
    assert dead[0]["message_id"] == f"{run}-bad"
    # As under the Functions host: the reason is not binding data, it is in the application properties.
    assert dead[0]["dead_letter_reason"] is None
    assert dead[0]["application_properties"]["DeadLetterReason"] == "MaxDeliveryCountExceeded"
    assert dead[0]["application_properties"]["DeadLetterErrorDescription"]
    assert dead[0]["invocation_id"]
    # The session goes on, in order, once the poison message has left it.
    after = wait_until(lambda: records("process_session", f"{run}-next", phase="end"), what="the next message")
    assert after[0]["at"] > max(a["at"] for a in attempts)


def test_the_function_gets_the_service_bus_message_the_worker_builds(
    host: HostProcess, send: Callable[..., None], records: Records
) -> None:
    run = unique("fields")
    sent_at = datetime.datetime.now(datetime.UTC)
    send("work", message(
        "ok", f"{run}-1", session_id=run,
        correlation_id=f"{run}-cid", content_type="application/json", subject="order", reply_to="replies",
        to="someone", time_to_live=datetime.timedelta(minutes=5),
        application_properties={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                "schemaVersion": 1, "flag": True},
    ))

    row = wait_until(lambda: records("process_session", run, phase="end"), what="the message")[0]

    assert row["message_id"] == f"{run}-1"
    assert row["session_id"] == run
    assert row["correlation_id"] == f"{run}-cid"
    assert row["content_type"] == "application/json"
    assert row["delivery_count"] == 1
    assert isinstance(row["sequence_number"], int)
    assert uuid.UUID(row["lock_token"])
    enqueued = datetime.datetime.fromisoformat(row["enqueued_time_utc"])
    assert enqueued.tzinfo is not None and abs((enqueued - sent_at).total_seconds()) < 10
    assert row["application_properties"] == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "schemaVersion": 1, "flag": True,
    }
    assert row["user_properties"] == row["application_properties"]
    assert (row["subject"], row["reply_to"], row["to"]) == ("order", "replies", "someone")
    # The host's binding data and nothing more: no LockedUntil, TimeToLive, State, ... and no sys.
    keys = set(row["metadata_keys"])
    assert keys <= set(SINGLE_MESSAGE_NAMES), f"not sent by the Functions host: {keys - set(SINGLE_MESSAGE_NAMES)}"
    assert {"MessageId", "SessionId", "DeliveryCount", "UserProperties", "ApplicationProperties", "LockToken",
            "EnqueuedTimeUtc", "EnqueuedTime", "ExpiresAtUtc", "ExpiresAt", "SequenceNumber", "Subject", "Label",
            "CorrelationId", "ContentType", "ReplyTo", "To"} <= keys
    assert (row["locked_until"], row["time_to_live"], row["dead_letter_reason"]) == (None, None, None)

    logged = wait_until(lambda: [r for r in host.log_records() if r.get("messageId") == f"{run}-1"
                                 and r["logger"] == "sample_servicebus"], what="the function's log line")
    assert logged[0]["correlationId"] == f"{run}-cid"
    assert logged[0]["sessionId"] == run
    assert logged[0]["functionName"] == "process_session"
    assert logged[0]["invocationId"]


def test_non_session_queue_runs_up_to_max_concurrent_calls(
    host: HostProcess, send: Callable[..., None], records: Records
) -> None:
    run = unique("calls")
    send("plain", *(message("sleep", f"{run}-{i}", seconds=0.4) for i in range(8)))

    rows = wait_until(lambda: len(records("process_plain", run, phase="end")) == 8 and records("process_plain", run),
                      what="8 processed messages")

    assert 3 <= max_overlap(list(intervals_by_message(rows).values())) <= 4


def test_locks_are_renewed_while_a_slow_function_runs(
    host: HostProcess, send: Callable[..., None], records: Records
) -> None:
    run = unique("renew")
    send("work", message("sleep", f"{run}-1", session_id=run, seconds=LOCK_SECONDS + 2))
    send("plain", message("sleep", f"{run}-2", seconds=LOCK_SECONDS + 2))

    wait_until(lambda: len(records("process_session", run, phase="end")) == 1
               and len(records("process_plain", run, phase="end")) == 1,
               timeout=LOCK_SECONDS + 15, what="both slow messages")
    time.sleep(1)

    # Without renewal each lock would expire mid-run and the message would be handed out again.
    assert len(records("process_session", run, phase="start")) == 1
    assert len(records("process_plain", run, phase="start")) == 1
    assert not [r for r in host.log_records() if "could not complete" in r["message"] and run in r["message"]]


def test_cardinality_many_hands_the_function_a_list_and_completes_them_all(
    host: HostProcess, broker: RunningBroker, send: Callable[..., None], records: Records
) -> None:
    run = unique("batch")
    send("batch", *(message("ok", f"{run}-{i}") for i in range(5)))

    rows = wait_until(lambda: len(records("process_batch", run)) == 5 and records("process_batch", run),
                      what="5 messages in batches")

    wait_until(lambda: _settled(broker, "batch"), what="the batch to be completed")
    assert sorted(r["message_id"] for r in records("process_batch", run)) == [f"{run}-{i}" for i in range(5)]
    assert max(r["batch_size"] for r in rows) > 1


def test_a_busy_session_is_let_go_before_its_lock_renewal_runs_out(
    workdir: Path, broker: RunningBroker, send: Callable[..., None], records: Records, record_dir: Path
) -> None:
    run = unique("long")
    app = copy_app(
        "servicebus_app",
        workdir / run,
        values={"ServiceBusConnection": broker.connection_string, "WORK_QUEUE": "long-session",
                "PLAIN_QUEUE": "drain-plain", "BATCH_QUEUE": "drain-batch",
                # Renewal stops after 2 s; the session lock (4 s) would then run out mid-session.
                "AzureFunctionsJobHost__extensions__serviceBus__maxAutoLockRenewalDuration": "00:00:02"},
    )
    with HostProcess(app, env={"RECORD_DIR": str(record_dir)}) as busy:
        send("long-session", *(message("sleep", f"{run}-{i}", session_id=run, seconds=0.8) for i in range(8)))
        wait_until(lambda: len(records("process_session", run, phase="end")) == 8, timeout=30,
                   what="8 messages of one long session")
        logged = busy.log_records()

    starts = records("process_session", run, phase="start")
    assert [r["message_id"] for r in starts] == [f"{run}-{i}" for i in range(8)]
    assert {r["delivery_count"] for r in starts} == {1}
    assert not [r for r in logged if r["level"] in ("WARNING", "ERROR") and r.get("functionName") == "process_session"]


def _session_held(broker: RunningBroker, queue: str, session_id: str) -> bool:
    return any(s["locked"] for s in broker.stats()[queue]["sessions"] if s["id"] == session_id)


def test_an_idle_session_keeps_its_slot_while_slots_are_spare_and_gives_it_up_when_none_is_left(
    workdir: Path, broker: RunningBroker, send: Callable[..., None], records: Records, record_dir: Path
) -> None:
    """Two session slots and a 60 s sessionIdleTimeout: a third customer's order would wait a minute for a
    slot if the idle sessions of the first two sat out their timeout."""
    run = unique("slots")
    app = copy_app(
        "servicebus_app",
        workdir / run,
        values={"ServiceBusConnection": broker.connection_string, "WORK_QUEUE": "few-slots",
                "PLAIN_QUEUE": "drain-plain", "BATCH_QUEUE": "drain-batch",
                "AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentSessions": "2",
                "AzureFunctionsJobHost__extensions__serviceBus__sessionIdleTimeout": "00:01:00"},
    )
    with HostProcess(app, env={"RECORD_DIR": str(record_dir)}):
        send("few-slots", message("ok", f"{run}-a-1", session_id=f"{run}-a"))
        wait_until(lambda: records("process_session", f"{run}-a-1", phase="end"), what="customer a's order")
        time.sleep(1.5)
        assert _session_held(broker, "few-slots", f"{run}-a"), "with a slot to spare, an idle session is kept"
        send("few-slots", message("ok", f"{run}-a-2", session_id=f"{run}-a"))
        wait_until(lambda: records("process_session", f"{run}-a-2", phase="end"), what="customer a's second order")

        send("few-slots", message("ok", f"{run}-b-1", session_id=f"{run}-b"))
        wait_until(lambda: records("process_session", f"{run}-b-1", phase="end"), what="customer b's order")
        send("few-slots", message("ok", f"{run}-c-1", session_id=f"{run}-c"))
        wait_until(lambda: records("process_session", f"{run}-c-1", phase="end"), timeout=15,
                   what="customer c's order, which needs a slot a or b gives up")

    starts = records("process_session", run, phase="start")
    assert [r["message_id"] for r in starts] == [f"{run}-a-1", f"{run}-a-2", f"{run}-b-1", f"{run}-c-1"]
    assert {r["delivery_count"] for r in starts} == {1}


def test_host_status_lists_the_listeners(host: HostProcess) -> None:
    status = httpx.get(f"{host.base_url}/admin/host/status", timeout=5).json()

    listeners = {listener["function"]: listener for listener in status["listeners"]}
    assert listeners["process_session"]["sessions"] is True
    assert listeners["dead_letters"]["deadLetter"] is True
    assert listeners["process_plain"]["state"] == "Listening"


def test_sigterm_stops_taking_messages_and_finishes_the_ones_under_way(
    workdir: Path, broker: RunningBroker, send: Callable[..., None], records: Records, record_dir: Path
) -> None:
    run = unique("drain")
    app = copy_app(
        "servicebus_app",
        workdir / run,
        values={"ServiceBusConnection": broker.connection_string, "WORK_QUEUE": "drain-work",
                "PLAIN_QUEUE": "drain-plain", "BATCH_QUEUE": "drain-batch"},
    )
    draining = HostProcess(app, env={"RECORD_DIR": str(record_dir)}).start()
    try:
        send("drain-work", message("sleep", f"{run}-1", session_id=run, seconds=1.5))
        send("drain-plain", message("sleep", f"{run}-2", seconds=1.5))
        wait_until(lambda: len(records("process_session", run, phase="start")) == 1
                   and len(records("process_plain", run, phase="start")) == 1, what="both invocations to start")

        code = draining.stop(signal.SIGTERM)
    finally:
        draining.kill()

    assert code == 0
    assert len(records("process_session", run, phase="end")) == 1
    assert len(records("process_plain", run, phase="end")) == 1
    stats = broker.stats()
    assert stats["drain-plain"]["active"] == 0 and stats["drain-plain"]["locked"] == 0
    assert stats["drain-work"]["active"] == 0 and stats["drain-work"]["locked"] == 0
    assert draining.log_records()[-1]["message"] == "Stopped."


def test_shutdown_waits_only_as_long_as_the_shutdown_timeout(
    workdir: Path, broker: RunningBroker, send: Callable[..., None], records: Records, record_dir: Path
) -> None:
    run = unique("bounded")
    app = copy_app(
        "servicebus_app",
        workdir / run,
        values={"ServiceBusConnection": broker.connection_string, "WORK_QUEUE": "drain-work",
                "PLAIN_QUEUE": "drain-plain", "BATCH_QUEUE": "drain-batch"},
    )
    stuck = HostProcess(app, args=["--shutdown-timeout", "1"], env={"RECORD_DIR": str(record_dir)}).start()
    try:
        send("drain-plain", message("sleep", f"{run}-1", seconds=30))
        wait_until(lambda: records("process_plain", run, phase="start"), what="the invocation to start")
        started = time.monotonic()
        code = stuck.stop(signal.SIGTERM, timeout=15)
        elapsed = time.monotonic() - started
    finally:
        stuck.kill()

    assert code == 0
    assert elapsed < 8
    assert not records("process_plain", run, phase="end")
    assert any("still running after 1s" in r["message"] for r in stuck.log_records())


def test_broker_outage_is_logged_once_and_the_host_reconnects(tmp_path: Path) -> None:
    records_path = tmp_path / "records"
    records_path.mkdir()
    with broker_process(QUEUES, data_dir=tmp_path / "bus") as bus:
        app = copy_app(
            "servicebus_app", tmp_path,
            values={"ServiceBusConnection": bus.connection_string, "WORK_QUEUE": "work", "PLAIN_QUEUE": "plain",
                    "BATCH_QUEUE": "batch"},
        )
        with HostProcess(app, env={"RECORD_DIR": str(records_path)}) as outage_host:
            def listener_states() -> dict[str, str]:
                status = httpx.get(f"{outage_host.base_url}/admin/host/status", timeout=5).json()
                return {listener["function"]: listener["state"] for listener in status["listeners"]}

            wait_until(lambda: set(listener_states().values()) == {"Listening"}, what="every listener, even with "
                       "no session to take")
            bus.kill()
            wait_until(lambda: listener_states()["process_plain"] == "Disconnected", what="the outage to be seen")
            time.sleep(3)  # several reconnection attempts fail meanwhile
            assert outage_host.proc is not None and outage_host.proc.poll() is None
            bus.start()
            with ServiceBusClient.from_connection_string(bus.connection_string) as client:
                with client.get_queue_sender("plain") as sender:
                    sender.send_messages(message("ok", "after-outage"))
                with client.get_queue_sender("work") as sender:
                    sender.send_messages(message("ok", "after-outage-session", session_id="after"))
            wait_until(lambda: {r.get("messageId") for r in outage_host.log_records()
                                if r.get("logger") == "sample_servicebus"} >= {"after-outage", "after-outage-session"},
                       timeout=30, what="messages sent after the broker came back")

        logged = outage_host.log_records()
    lost = [r for r in logged if r.get("functionName") == "process_plain" and "cannot receive" in r["message"]]
    back = [r for r in logged if r.get("functionName") == "process_plain" and "reconnected" in r["message"]]
    assert len(lost) == 1 and lost[0]["level"] == "WARNING"
    assert len(back) == 1
