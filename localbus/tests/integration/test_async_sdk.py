"""The same broker through the asynchronous SDK (``azure.servicebus.aio``)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage, ServiceBusMessageState, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    SessionCannotBeLockedError,
)

from localbus.embedded import running_broker

CONFIG = {
    "queues": [
        {"name": "orders", "requiresSession": True, "requiresDuplicateDetection": True},
        {"name": "order-status"},
        {"name": "async-plain", "maxDeliveryCount": 2},
        {"name": "async-defer"},
    ]
}


@pytest.fixture(scope="module")
def broker():
    with running_broker(CONFIG, in_memory=True) as b:
        yield b


async def receive_n(receiver, n: int, timeout: float = 10.0) -> list:
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(await receiver.receive_messages(max_message_count=n - len(out), max_wait_time=1))
    return out


async def test_send_receive_settle_and_dead_letter(broker):
    async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_sender("async-plain") as sender:
            await sender.send_messages(ServiceBusMessage("a", message_id="a-1", correlation_id="c-1"))
            batch = await sender.create_message_batch()
            batch.add_message(ServiceBusMessage("b"))
            batch.add_message(ServiceBusMessage("c"))
            await sender.send_messages(batch)
        async with client.get_queue_receiver("async-plain", max_wait_time=5, prefetch_count=10) as receiver:
            a, b, c = await receive_n(receiver, 3)
            assert [str(a), str(b), str(c)] == ["a", "b", "c"]
            assert a.message_id == "a-1" and a.correlation_id == "c-1"
            await receiver.complete_message(a)
            await receiver.dead_letter_message(b, reason="Invalid", error_description="no items")
            await receiver.abandon_message(c)
            [c2] = await receive_n(receiver, 1)
            assert c2.delivery_count == 1
            await receiver.abandon_message(c2)  # second failed delivery: MaxDeliveryCount is 2
            assert await receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
        async with client.get_queue_receiver("async-plain", sub_queue=ServiceBusSubQueue.DEAD_LETTER,
                                             max_wait_time=5) as dlq:
            dead = await receive_n(dlq, 2)
            reasons = {str(m): m.dead_letter_reason for m in dead}
            assert reasons == {"b": "Invalid", "c": "MaxDeliveryCountExceeded"}
            for m in dead:
                await dlq.complete_message(m)


async def test_orders_queue_sessions_and_duplicate_detection(broker):
    customer = f"c-{uuid.uuid4()}"
    async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_sender("orders") as sender:
            for i in range(3):
                await sender.send_messages(ServiceBusMessage(f"o{i}", session_id=customer, message_id=f"{customer}-{i}"))
            await sender.send_messages(ServiceBusMessage("o0 retry", session_id=customer, message_id=f"{customer}-0"))
        async with client.get_queue_receiver("orders", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as receiver:
            assert receiver.session.session_id == customer
            with pytest.raises(SessionCannotBeLockedError):
                async with client.get_queue_receiver("orders", session_id=customer, max_wait_time=2) as other:
                    await other.receive_messages(max_wait_time=1)
            got = await receive_n(receiver, 3)
            assert [str(m) for m in got] == ["o0", "o1", "o2"]
            await receiver.session.set_state(b"done")
            assert await receiver.session.get_state() == b"done"
            await receiver.session.renew_lock()
            for m in got:
                await receiver.complete_message(m)
            assert await receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
        with pytest.raises(OperationTimeoutError):
            async with client.get_queue_receiver("orders", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver:
                await receiver.receive_messages(max_wait_time=1)


async def test_defer_peek_schedule_async(broker):
    async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_sender("async-defer") as sender:
            await sender.send_messages(ServiceBusMessage("d"))
            [seq] = await sender.schedule_messages(ServiceBusMessage("s"), time_from_now(3600))
        async with client.get_queue_receiver("async-defer", max_wait_time=5) as receiver:
            [d] = await receive_n(receiver, 1)
            await receiver.defer_message(d)
            peeked = await receiver.peek_messages(max_message_count=10, sequence_number=1)
            assert [str(m) for m in peeked] == ["d", "s"]
            assert [m.state for m in peeked] == [ServiceBusMessageState.DEFERRED, ServiceBusMessageState.SCHEDULED]
            [again] = await receiver.receive_deferred_messages([d.sequence_number])
            await receiver.renew_message_lock(again)
            await receiver.complete_message(again)
        async with client.get_queue_sender("async-defer") as sender:
            await sender.cancel_scheduled_messages(seq)
    assert broker.stats()["async-defer"]["scheduled"] == 0


async def test_errors_map_to_sdk_exceptions(broker):
    async with ServiceBusClient.from_connection_string(broker.connection_string, retry_total=0) as client:
        with pytest.raises(MessagingEntityNotFoundError):
            async with client.get_queue_sender("missing") as sender:
                await sender.send_messages(ServiceBusMessage("x"))
    wrong = broker.connection_string.replace(broker.config.key, "bm9wZQ==")
    async with ServiceBusClient.from_connection_string(wrong, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            async with client.get_queue_sender("order-status") as sender:
                await sender.send_messages(ServiceBusMessage("x"))


async def test_many_concurrent_async_senders(broker):
    async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        async def send(i: int) -> None:
            async with client.get_queue_sender("order-status") as sender:
                await sender.send_messages([ServiceBusMessage(f"{i}-{j}") for j in range(5)])

        await asyncio.gather(*(send(i) for i in range(20)))
    assert broker.stats()["order-status"]["active"] == 100
    async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_receiver("order-status", max_wait_time=5, prefetch_count=100) as receiver:
            got = await receive_n(receiver, 100)
            assert len({str(m) for m in got}) == 100
            for m in got:
                await receiver.complete_message(m)


def time_from_now(seconds: float):
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
