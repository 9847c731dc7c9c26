"""Concurrent use of the SDK as applications write it, through its public API only.

Many ``send_messages`` on one sender at once, settlement and lock renewal of many messages and sessions at
once (``AutoLockRenewer``), several receivers and session receivers on one client, sync clients shared by
threads. Service Bus takes all of these; so must the broker: every message stored once, no connection lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import AutoLockRenewer
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from localbus.embedded import running_broker

CONFIG = {
    "queues": [
        {"name": "burst"},
        {"name": "renew", "lockDuration": "PT5S"},
        {"name": "many-sessions", "requiresSession": True, "lockDuration": "PT5S"},
        {"name": "fan-out"},
        {"name": "threads"},
    ]
}


@pytest.fixture(scope="module")
def broker():
    with running_broker(CONFIG, in_memory=True) as b:
        yield b


def _bodies(messages) -> list[str]:
    return [b"".join(m.body).decode() for m in messages]


async def _drain(client: AsyncServiceBusClient, queue: str, expected: int, timeout: float = 15.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    async with client.get_queue_receiver(queue, max_wait_time=1) as receiver:
        while len(got) < expected and time.monotonic() < deadline:
            batch = await receiver.receive_messages(max_message_count=50, max_wait_time=1)
            for message in batch:
                await receiver.complete_message(message)
            got += _bodies(batch)
        # Anything beyond what was sent would be a duplicate: look once more.
        got += _bodies(await receiver.receive_messages(max_message_count=50, max_wait_time=1))
    return got


async def test_twenty_concurrent_sends_on_one_sender_store_twenty_and_keep_the_connection(broker):
    async with AsyncServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_sender("burst") as sender:
            for round_ in range(3):
                bodies = [f"{round_}-{n}" for n in range(20)]
                await asyncio.gather(*(sender.send_messages(ServiceBusMessage(body)) for body in bodies))
            await sender.send_messages(ServiceBusMessage("after"))  # the same link still works
        got = await _drain(client, "burst", 61)
    assert sorted(got) == sorted([f"{r}-{n}" for r in range(3) for n in range(20)] + ["after"])


async def test_auto_lock_renewer_keeps_many_messages_locked_past_their_lock_duration(broker):
    async with AsyncServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_sender("renew") as sender:
            await sender.send_messages([ServiceBusMessage(f"m{n}") for n in range(15)])
        lost: list[BaseException] = []

        async def on_failure(_renewable, error):
            lost.append(error)

        async with AutoLockRenewer(max_lock_renewal_duration=30, on_lock_renew_failure=on_failure) as renewer:
            async with client.get_queue_receiver("renew", prefetch_count=0) as receiver:
                held = []
                while len(held) < 15:
                    batch = await receiver.receive_messages(max_message_count=15 - len(held), max_wait_time=2)
                    for message in batch:
                        renewer.register(receiver, message)
                    held += batch
                await asyncio.sleep(8)  # past the 5 s lock (Service Bus' shortest): renewed concurrently meanwhile
                await asyncio.gather(*(receiver.complete_message(m) for m in held))
    assert lost == []
    assert broker.stats()["renew"]["active"] == 0


async def test_session_receivers_on_one_client_with_renewal_each_get_their_own_session_in_order(broker):
    sessions = [f"s-{n}" for n in range(6)]
    async with AsyncServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_sender("many-sessions") as sender:
            await sender.send_messages([ServiceBusMessage(f"{s}:{i}", session_id=s)
                                        for i in range(5) for s in sessions])
        lost: list[BaseException] = []

        async def on_failure(_renewable, error):
            lost.append(error)

        async def take(session_id: str) -> list[str]:
            async with client.get_queue_receiver("many-sessions", session_id=session_id) as receiver:
                # The renewer stops before its receiver closes, as the SDK's documentation has it.
                async with AutoLockRenewer(max_lock_renewal_duration=30, on_lock_renew_failure=on_failure) as renewer:
                    renewer.register(receiver, receiver.session)
                    got: list[str] = []
                    while len(got) < 5:
                        batch = await receiver.receive_messages(max_message_count=1, max_wait_time=2)
                        for message in batch:
                            await receiver.complete_message(message)
                        got += _bodies(batch)
                        await asyncio.sleep(1.5)  # slow work: the session lock (5 s) must be renewed
                    return got

        results = await asyncio.gather(*(take(s) for s in sessions))
    assert [repr(getattr(e, "inner_exception", e)) for e in lost] == []
    assert results == [[f"{s}:{i}" for i in range(5)] for s in sessions]


async def test_many_receivers_on_one_client_compete_without_duplicates(broker):
    async with AsyncServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_sender("fan-out") as sender:
            await sender.send_messages([ServiceBusMessage(f"f{n}") for n in range(60)])

        async def consume() -> list[str]:
            got: list[str] = []
            async with client.get_queue_receiver("fan-out", prefetch_count=5) as receiver:
                while True:
                    batch = await receiver.receive_messages(max_message_count=5, max_wait_time=1)
                    if not batch:
                        return got
                    await asyncio.gather(*(receiver.complete_message(m) for m in batch))
                    got += _bodies(batch)

        results = await asyncio.gather(*(consume() for _ in range(4)))
    everything = [body for result in results for body in result]
    assert sorted(everything) == sorted(f"f{n}" for n in range(60))


def test_a_sync_client_shared_by_threads_sends_and_receives_everything(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        sender = client.get_queue_sender("threads")
        lock = threading.Lock()  # the SDK documents its sync senders as not thread-safe: share under a lock
        with sender:
            def send(n: int) -> None:
                with lock:
                    sender.send_messages(ServiceBusMessage(f"t{n}"))

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(send, range(40)))

        def receive_some() -> list[str]:
            got: list[str] = []
            with client.get_queue_receiver("threads", max_wait_time=1) as receiver:
                for message in receiver:
                    receiver.complete_message(message)
                    got.append(str(message))
            return got

        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda _: receive_some(), range(3)))
    assert sorted(b for r in results for b in r) == sorted(f"t{n}" for n in range(40))


def test_no_message_is_lost_when_threads_use_their_own_senders_on_one_client(broker):
    marker = uuid.uuid4().hex[:8]
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        def send(n: int) -> None:
            with client.get_queue_sender("threads") as sender:
                sender.send_messages([ServiceBusMessage(f"{marker}-{n}-{i}") for i in range(5)])

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(send, range(8)))
        got: list[str] = []
        with client.get_queue_receiver("threads", max_wait_time=1) as receiver:
            for message in receiver:
                receiver.complete_message(message)
                got.append(str(message))
    assert sorted(got) == sorted(f"{marker}-{n}-{i}" for n in range(8) for i in range(5))
