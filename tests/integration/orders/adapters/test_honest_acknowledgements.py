"""What the intake's sender says when the broker does not answer in time, against a real broker process that
is frozen (SIGSTOP) in the middle of a send and thawed later: the caller is told the outcome is unknown,
within its deadline; the message does land; a retry with the same message id leaves exactly one."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from localbus.embedded import broker_process
from orders.adapters.servicebus_batch_sender import AcknowledgementUnknown, Envelope, SendFailed, ServiceBusBatchSender

DEADLINE = 2.0


def envelope(message_id: str) -> Envelope:
    return Envelope(body=b'{"n": 1}', message_id=message_id, correlation_id=message_id, session_id="c-1")


def freeze(pid: int) -> None:
    """SIGSTOP ``pid`` and return once every thread of it is stopped.

    ``kill`` only queues the signal: the broker's loop thread, running on the other core, goes on serving
    until the thread that takes the signal is scheduled and stops the group. A send in that gap is
    acknowledged for real, which is not the case under test.
    """
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5.0
    tasks = Path(f"/proc/{pid}/task")
    while not all(state_of(task) in ("T", "t") for task in tasks.iterdir()):
        assert time.monotonic() < deadline, f"broker {pid} did not stop within 5 s of SIGSTOP"
        time.sleep(0.001)


def state_of(task: Path) -> str:
    """The one-letter scheduler state in ``/proc/<pid>/task/<tid>/stat`` (after the parenthesised name)."""
    return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]


def messages_in(connection_string: str) -> list[str]:
    ids = []
    with ServiceBusClient.from_connection_string(connection_string) as client:
        try:
            receiver = client.get_queue_receiver("orders", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=3)
            with receiver:
                for message in receiver.receive_messages(max_message_count=50, max_wait_time=3):
                    ids.append(str(message.message_id))
                    receiver.complete_message(message)
        except Exception:  # noqa: BLE001 - no session with messages: nothing in the queue
            pass
    return ids


def test_a_broker_frozen_mid_send_gives_an_unknown_outcome_in_time_and_a_safe_retry(tmp_path: Path) -> None:
    with broker_process(data_dir=tmp_path / "broker") as broker:
        message_id = str(uuid.uuid4())

        async def scenario() -> tuple[type[Exception], float]:
            sender = ServiceBusBatchSender(
                lambda: AsyncServiceBusClient.from_connection_string(broker.connection_string), "orders",
                timeout_seconds=DEADLINE)
            await sender.publish(envelope(str(uuid.uuid4())))  # the link is open
            freeze(broker.proc.pid)
            started = time.monotonic()
            try:
                with pytest.raises(SendFailed) as failed:
                    await sender.publish(envelope(message_id))
                took = time.monotonic() - started
            finally:
                os.kill(broker.proc.pid, signal.SIGCONT)
            await asyncio.sleep(1.0)
            await sender.publish(envelope(message_id))  # the retry the client is told to make
            await sender.close()
            return type(failed.value), took

        kind, took = asyncio.run(scenario())
        assert kind is AcknowledgementUnknown, "the message was on the wire: 'nothing was accepted' would be a lie"
        assert took < DEADLINE + 0.5, "the answer came within the caller's deadline"
        landed = messages_in(broker.connection_string)
        assert landed.count(message_id) == 1, f"exactly one copy after the retry: {landed}"


def test_a_broker_that_is_down_before_the_send_is_a_plain_failure(tmp_path: Path) -> None:
    with broker_process(data_dir=tmp_path / "broker") as broker:
        connection_string = broker.connection_string
        broker.terminate()

        async def scenario() -> Exception:
            sender = ServiceBusBatchSender(lambda: AsyncServiceBusClient.from_connection_string(connection_string),
                                           "orders", timeout_seconds=DEADLINE)
            with pytest.raises(SendFailed) as failed:
                await sender.publish(envelope(str(uuid.uuid4())))
            closing = time.monotonic()
            await sender.close()
            return failed.value, time.monotonic() - closing

        error, closing_took = asyncio.run(scenario())
        assert not isinstance(error, AcknowledgementUnknown), "nothing went out: safe to retry"
        # The SDK goes on retrying the connection for longer; a shutdown does not wait for that.
        assert closing_took < DEADLINE + 1.0, f"closing the sender took {closing_took:.1f}s"
