"""The intake's adapters against real servers: the local broker (through the azure-servicebus SDK) and a
private redis-server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from azure.servicebus import ServiceBusClient
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from localbus.embedded import RunningBroker, running_broker
from service_platform.redis_clients import redis_client
from orders.adapters.redis_accepted_records import RedisAcceptedRecordStore
from orders.adapters.servicebus_publishers import ServiceBusOrderPublisher, ServiceBusStatusEventPublisher
from orders.adapters.servicebus_batch_sender import SOCKET_TIMEOUT_SECONDS, Envelope, ServiceBusBatchSender
from orders.domain.errors import TransientError
from orders.domain.events import OrderStatusChanged
from orders.domain.model import AcceptedRecord, OrderLine, OrderMessage, OrderOutcome, OrderStatus


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    with running_broker(in_memory=True) as running:
        yield running


def _message(customer: str) -> OrderMessage:
    return OrderMessage(correlation_id=str(uuid.uuid4()), customer_id=customer, currency="EUR",
                        items=(OrderLine("SKU-1", 2),), accepted_at=datetime.now(UTC), traceparent="00-abc-def-01")


def _drain(connection_string: str, queue: str, expected: int, session: bool) -> list:
    received = []
    with ServiceBusClient.from_connection_string(connection_string) as client:
        while len(received) < expected:
            if session:
                from azure.servicebus import NEXT_AVAILABLE_SESSION

                receiver = client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2)
            else:
                receiver = client.get_queue_receiver(queue, max_wait_time=2)
            with receiver:
                batch = receiver.receive_messages(max_message_count=500, max_wait_time=2)
                for message in batch:
                    receiver.complete_message(message)
                received.extend(batch)
    return received


def test_concurrent_orders_go_out_in_few_batches_and_arrive_once_each(broker: RunningBroker) -> None:
    async def publish_all() -> tuple[list[OrderMessage], int]:
        publisher = ServiceBusBatchSender(lambda: AsyncServiceBusClient.from_connection_string(broker.connection_string),
                                        "orders")
        orders = ServiceBusOrderPublisher(publisher)
        messages = [_message(f"c-{n % 5}") for n in range(300)]
        await orders.publish(messages[0])  # opens the link
        await asyncio.gather(*(orders.publish(message) for message in messages[1:]))
        await orders.close()
        return messages, publisher.batches_sent

    messages, batches = asyncio.run(publish_all())
    received = _drain(broker.connection_string, "orders", 300, session=True)

    assert batches < 30, f"{batches} round trips for 300 concurrent orders: sends were not coalesced"
    by_id = {str(message.message_id): message for message in received}
    assert len(received) == len(by_id) == 300
    sample = by_id[messages[7].correlation_id]
    assert sample.session_id == messages[7].customer_id
    assert str(sample.correlation_id) == messages[7].correlation_id
    assert sample.application_properties[b"traceparent"] == b"00-abc-def-01"
    assert json.loads(b"".join(sample.body))["items"] == [{"sku": "SKU-1", "quantity": 2}]


def test_status_events_from_many_threads_share_one_link(broker: RunningBroker) -> None:
    publisher = ServiceBusStatusEventPublisher(
        lambda: AsyncServiceBusClient.from_connection_string(broker.connection_string), "order-status")
    events = [OrderStatusChanged(OrderOutcome(str(uuid.uuid4()), OrderStatus.COMPLETED, n, None, "EUR", None,
                                              datetime.now(UTC)))
              for n in range(40)]
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(publisher.publish, events))
    finally:
        publisher.close()

    received = _drain(broker.connection_string, "order-status", 40, session=False)
    assert sorted(str(m.message_id) for m in received) == sorted(f"{e.correlation_id}:Completed" for e in events)


def test_a_publisher_for_an_unreachable_broker_raises_transient_error_quickly() -> None:
    async def attempt() -> None:
        publisher = ServiceBusOrderPublisher(ServiceBusBatchSender(
            lambda: AsyncServiceBusClient.from_connection_string(
                "Endpoint=sb://localhost:1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;",
                retry_total=0), "orders", timeout_seconds=5))
        try:
            await publisher.publish(_message("c-1"))
        finally:
            await publisher.close()

    with pytest.raises(TransientError, match="orders"):
        asyncio.run(attempt())


def test_accepted_records_round_trip_with_a_ttl(redis_server) -> None:
    record = AcceptedRecord(str(uuid.uuid4()), "c-1", "EUR", datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))

    async def scenario() -> tuple[AcceptedRecord | None, int]:
        client = redis_client(redis_server.url)
        registry = RedisAcceptedRecordStore(client)
        await registry.record_accepted(record, ttl_seconds=90_000)
        found = await registry.get_accepted(record.correlation_id)
        ttl = await client.ttl(f"orders:accepted:{record.correlation_id}")
        await client.aclose()
        return found, ttl

    found, ttl = asyncio.run(scenario())
    assert found == record
    assert 89_990 < ttl <= 90_000


def test_with_redis_down_recording_is_skipped_and_reads_are_transient_errors(redis_server) -> None:
    record = AcceptedRecord(str(uuid.uuid4()), "c-1", "EUR", datetime.now(UTC))

    async def scenario() -> None:
        client = redis_client(redis_server.url)
        registry = RedisAcceptedRecordStore(client)
        redis_server.stop()
        try:
            await registry.record_accepted(record, ttl_seconds=90_000)  # must not raise
            with pytest.raises(TransientError, match="Redis"):
                await registry.get_accepted(record.correlation_id)
        finally:
            redis_server.start()
            await client.aclose()

    asyncio.run(scenario())


def test_the_sdks_keep_alive_holds_the_link_for_a_moment_only(broker: RunningBroker) -> None:
    """The SDK reads and writes an AMQP connection under one lock, and every 30 s its keep-alive listens for a
    frame while holding it, for the transport's socket timeout: with the SDK's default (0.2 s) every send on
    an idle link waited that long, a 200 ms stall of all intake requests (docs/benchmarks.md). The sender
    passes its own short timeout, and this checks that it reaches the SDK's AMQP client as pinned; the
    effect is measured by the pipeline benchmark's intake open-loop row, as tests time nothing."""
    async def open_and_inspect() -> tuple[float, int]:
        publisher = ServiceBusBatchSender(lambda: AsyncServiceBusClient.from_connection_string(broker.connection_string),
                                          "order-status")
        await publisher.publish(Envelope(b"{}", message_id=str(uuid.uuid4())))
        handler = publisher._sender._handler  # the SDK's AMQP send client behind the sender
        timeouts = (handler._socket_timeout, handler._keep_alive_interval)
        await publisher.close()
        return timeouts

    socket_timeout, keep_alive = asyncio.run(open_and_inspect())

    assert keep_alive > 0, "the keep-alive still runs (it keeps an idle link open)"
    assert socket_timeout == SOCKET_TIMEOUT_SECONDS < 0.2
