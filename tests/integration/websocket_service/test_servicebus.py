"""The WebSocket service on the local Service Bus–compatible broker: the consumer adapter in process, and
instances as real processes consuming ``order-status`` as competing consumers."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from websockets.asyncio.client import connect

from localbus.embedded import broker_process, running_broker
from service_platform.backoff import Backoff
from service_platform.notify_tokens import DEFAULT_KEY_ID, NotifyTokenSigner
from service_platform.servicebus_clients import ServiceBusClientFactory
from local_servers.ports import free_port, popen_listening, wait_for_http
from local_servers.redis_server import RedisServer
from websocket_service.core import Disposition, StatusEvent
from websocket_service.servicebus_consumer import ServiceBusStatusConsumer
from tests.waiting import wait_until_async as wait_until

ROOT = Path(__file__).resolve().parents[3]
QUEUE = "order-status"
SECRET = "sb-test-notify-secret"


def status_message(cid: str, status: str, **fields: object) -> ServiceBusMessage:
    body = {"correlationId": cid, "status": status, "orderId": None, "total": None, "currency": "EUR",
            "reason": None, "updatedAt": "2026-01-01T00:00:00Z", **fields}
    return ServiceBusMessage(json.dumps(body), message_id=f"{cid}:{status}", correlation_id=cid,
                             content_type="application/json")


async def send(connection_string: str, *messages: ServiceBusMessage) -> None:
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            await sender.send_messages(list(messages))


async def test_consumer_routes_completes_abandons_and_dead_letters() -> None:
    with running_broker(in_memory=True) as broker:
        consumer = ServiceBusStatusConsumer.from_settings(broker.connection_string, None, QUEUE)
        seen: list[tuple[str, str, int]] = []
        give_back_once = str(uuid.uuid4())

        async def handle(received):
            seen.extend((event.correlation_id, event.status, count) for event, count in received)
            return [Disposition.ABANDON if event.correlation_id == give_back_once and count == 0
                    else Disposition.COMPLETE for event, count in received]

        task = asyncio.create_task(consumer.run(handle))
        try:
            await wait_until(lambda: consumer.connected)
            done = str(uuid.uuid4())
            bad = ServiceBusMessage(b'{"correlationId": "nope"}', message_id="bad")
            await send(broker.connection_string, status_message(done, "Completed", orderId=3), bad,
                       status_message(give_back_once, "Rejected", reason="no stock"))
            await wait_until(lambda: (give_back_once, "Rejected", 1) in seen)
            await wait_until(lambda: broker.stats()[QUEUE]["active"] == 0 and broker.stats()[QUEUE]["locked"] == 0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert (done, "Completed", 0) in seen
        assert (give_back_once, "Rejected", 0) in seen, "an abandoned event comes back with its count raised"
        assert broker.stats()[QUEUE]["deadLettered"] == 1, "an event that breaks the contract is dead-lettered"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_consumer_reconnects_when_the_broker_comes_back() -> None:
    """The SDK leaves the socket of a connection whose broker was killed for the garbage collector; the
    warning it raises then is collected here rather than in whichever test runs next."""
    with tempfile.TemporaryDirectory() as data_dir, broker_process(data_dir=data_dir) as broker:
        # Pauses of at most 1 s keep the test short; the default grows to 30 s.
        consumer = ServiceBusStatusConsumer(ServiceBusClientFactory(broker.connection_string), QUEUE,
                                            backoff=Backoff(initial=0.5, maximum=1.0))
        seen: list[str] = []

        async def handle(received):
            seen.extend(event.correlation_id for event, _ in received)
            return [Disposition.COMPLETE] * len(received)

        task = asyncio.create_task(consumer.run(handle))
        try:
            await wait_until(lambda: consumer.connected)
            broker.kill()
            await wait_until(lambda: not consumer.connected, timeout=30)
            await asyncio.to_thread(broker.start)
            cid = str(uuid.uuid4())
            await send(broker.connection_string, status_message(cid, "Completed"))
            await wait_until(lambda: cid in seen, timeout=30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            gc.collect()


@pytest.fixture
def shared_broker() -> Iterator[object]:
    with running_broker(in_memory=True) as broker:
        yield broker


def start_instance(name: str, redis_url: str, connection_string: str, prefix: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "WS_INSTANCE_ID": name, "REDIS_URL": redis_url,
           "ServiceBusConnection": connection_string, "ORDER_STATUS_QUEUE": QUEUE,
           "STATUS_API_URL": f"http://127.0.0.1:{free_port()}/api",  # nothing there: current status unknown
           "NOTIFY_TOKEN_SECRET": SECRET, "WS_INTERNAL_SECRET": "sb-internal", "WS_REGISTRY_PREFIX": prefix,
           "PYTHONPATH": str(ROOT)}
    process, port = popen_listening([sys.executable, "-m", "websocket_service"], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_http(f"http://127.0.0.1:{port}/healthz", process)
    return process, port


async def test_instances_on_the_broker_deliver_each_client_its_own_events(
        redis_server: RedisServer, shared_broker) -> None:
    """Two instances consume ``order-status`` from the local broker; clients on each get only their orders."""
    prefix = f"sb{uuid.uuid4().hex[:6]}:"
    processes = []
    try:
        ports = []
        for name in ("a", "b"):
            process, port = start_instance(name, redis_server.url, shared_broker.connection_string, prefix)
            processes.append(process)
            ports.append(port)
        import httpx

        async with httpx.AsyncClient() as http:
            for port in ports:
                deadline = time.monotonic() + 20
                while (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code != 200:
                    assert time.monotonic() < deadline, "instance never became ready on the broker"
                    await asyncio.sleep(0.1)
        orders = {str(uuid.uuid4()): port for port in ports for _ in range(3)}
        sockets = {}
        for cid, port in orders.items():
            token = NotifyTokenSigner(DEFAULT_KEY_ID, SECRET.encode()).issue(cid, 600)
            sockets[cid] = await connect(f"ws://127.0.0.1:{port}/ws?correlationId={cid}&token={token}", proxy=None)
        await asyncio.sleep(0.3)  # subscriptions registered
        await send(shared_broker.connection_string,
                   *[status_message(cid, "Completed", orderId=i) for i, cid in enumerate(orders)],
                   status_message(str(uuid.uuid4()), "Completed"))
        for i, (cid, ws) in enumerate(sockets.items()):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert (frame["correlationId"], frame["status"], frame["orderId"]) == (cid, "Completed", i)
        for ws in sockets.values():
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.2)
            await ws.close()
        await wait_until(lambda: shared_broker.stats()[QUEUE]["active"] == 0, timeout=10)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)


def test_status_events_parse_as_the_pipeline_sends_them() -> None:
    cid = str(uuid.uuid4())
    message = status_message(cid, "Completed", orderId=1, total="2.00")
    assert StatusEvent.from_json(b"".join(message.body)).order_id == 1
