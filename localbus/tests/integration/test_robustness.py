"""Bad input and heavy use never take the broker down: garbage, vanishing clients, many connections."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from localbus.embedded import running_broker
from localbus.tests.helpers import receive_n

CONFIG = {"queues": [{"name": "work", "lockDuration": "PT5S"}, {"name": "busy"}, {"name": "cut"}]}


@pytest.fixture(scope="module")
def broker():
    with running_broker(CONFIG, in_memory=True) as b:
        yield b


def _still_serves(broker, queue: str = "work") -> None:
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("still here"))
        with client.get_queue_receiver(queue, max_wait_time=5) as receiver:
            [m] = receive_n(receiver, 1)
            assert str(m) == "still here"
            receiver.complete_message(m)


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks)


def test_garbage_and_malformed_frames_only_drop_that_connection(broker):
    _raw(broker.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _raw(broker.port, b"\x00" * 1000)
    # A valid SASL header, then a frame whose size field claims far more than is sent and whose body is junk.
    _raw(broker.port, b"AMQP\x03\x01\x00\x00" + b"\x00\x00\x00\x10\x02\x01\x00\x00\xde\xad\xbe\xef\xde\xad\xbe\xef")
    # AMQP without SASL, then a frame with an impossible performative.
    _raw(broker.port, b"AMQP\x00\x01\x00\x00" + b"\x00\x00\x00\x0c\x02\x00\x00\x00\x00\x53\x99\x45")
    _still_serves(broker)


class CuttingProxy:
    """Forwards one client connection to the broker and cuts it after ``limit`` bytes from the client."""

    def __init__(self, target_port: int, limit: int) -> None:
        self.target_port = target_port
        self.limit = limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        sent = 0

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass

        threading.Thread(target=back, daemon=True).start()
        try:
            while data := client.recv(65536):
                if sent + len(data) >= self.limit:
                    upstream.sendall(data[: self.limit - sent])
                    break
                upstream.sendall(data)
                sent += len(data)
        except OSError:
            pass
        self.cut.set()
        for s in (upstream, client, self.listener):
            try:
                s.close()
            except OSError:
                pass


_CUT_SENDER = """
import sys
from azure.servicebus import ServiceBusClient, ServiceBusMessage
with ServiceBusClient.from_connection_string(sys.argv[1], retry_total=0) as client:
    with client.get_queue_sender("cut") as sender:
        sender.send_messages(ServiceBusMessage(b"x" * 200_000), timeout=5)
        print("sent")
"""


def test_client_vanishing_mid_transfer_leaves_nothing_half_sent(broker):
    # The handshake is a few kB; the message is 200 kB, so the cut lands inside the transfer frames.
    proxy = CuttingProxy(broker.port, limit=60_000)
    conn_str = broker.connection_string.replace(f"localhost:{broker.port}", f"localhost:{proxy.port}")
    # The sender runs in its own process: the SDK leaves its socket to the garbage collector after such a cut.
    result = subprocess.run([sys.executable, "-c", _CUT_SENDER, conn_str], capture_output=True, text=True, timeout=60)
    assert "sent" not in result.stdout
    assert proxy.cut.wait(5)
    time.sleep(0.3)
    assert broker.stats()["cut"]["active"] == 0
    _still_serves(broker, "cut")


_VANISHING_RECEIVER = """
import sys, time
from azure.servicebus import ServiceBusClient
client = ServiceBusClient.from_connection_string(sys.argv[1])
receiver = client.get_queue_receiver("work", max_wait_time=5)
messages = receiver.receive_messages(max_message_count=1, max_wait_time=10)
print(len(messages), flush=True)
time.sleep(60)
"""


def test_receiver_killed_with_its_lock_releases_the_message_after_the_lock(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        with client.get_queue_sender("work") as sender:
            sender.send_messages(ServiceBusMessage("orphan"))
    proc = subprocess.Popen([sys.executable, "-c", _VANISHING_RECEIVER, broker.connection_string],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"
        locked_at = time.monotonic()
        proc.kill()
        proc.wait(10)
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert broker.stats()["work"]["locked"] == 1
    with ServiceBusClient.from_connection_string(broker.connection_string) as other:
        with other.get_queue_receiver("work", max_wait_time=8) as r2:
            [again] = receive_n(r2, 1, timeout=10)
            assert str(again) == "orphan" and again.delivery_count == 1
            assert time.monotonic() - locked_at >= 4.5  # not before its 5 s lock ran out
            r2.complete_message(again)


def test_competing_consumers_never_share_a_locked_message(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        with client.get_queue_sender("busy") as sender:
            sender.send_messages([ServiceBusMessage(f"job-{i}") for i in range(200)])
    seen: list[list[str]] = [[] for _ in range(4)]

    def consume(slot: int) -> None:
        with ServiceBusClient.from_connection_string(broker.connection_string) as c:
            with c.get_queue_receiver("busy", max_wait_time=2, prefetch_count=10) as receiver:
                idle = 0
                while idle < 2:
                    batch = receiver.receive_messages(max_message_count=10, max_wait_time=1)
                    if not batch:
                        idle += 1
                        continue
                    idle = 0
                    for m in batch:
                        seen[slot].append(str(m))
                        receiver.complete_message(m)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [body for part in seen for body in part]
    assert sorted(everything) == sorted(f"job-{i}" for i in range(200))  # each exactly once
    assert sum(1 for part in seen if part) >= 2  # the work was actually shared
    assert broker.stats()["busy"]["active"] == 0


async def test_hundreds_of_concurrent_connections(broker):
    clients = [AsyncServiceBusClient.from_connection_string(broker.connection_string) for _ in range(200)]
    senders = [c.get_queue_sender("busy") for c in clients]
    try:
        await asyncio.gather(*(s.__aenter__() for s in senders))
        await asyncio.gather(*(s.send_messages(ServiceBusMessage(f"conn-{i}")) for i, s in enumerate(senders)))
        assert broker.stats()["busy"]["active"] == 200
    finally:
        await asyncio.gather(*(s.close() for s in senders), return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        with client.get_queue_receiver("busy", max_wait_time=5, prefetch_count=200) as receiver:
            got = receive_n(receiver, 200)
            assert sorted(str(m) for m in got) == sorted(f"conn-{i}" for i in range(200))
            for m in got:
                receiver.complete_message(m)


def _broker_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("localbus") and r.levelno >= 30]


def _detach_after_end(port: int) -> None:
    """A real AMQP client (Proton's engine) that ends its session and then sends a DETACH on that channel."""
    from proton import Connection, Transport

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        transport = Transport()
        transport.sasl().allowed_mechs("ANONYMOUS")
        connection = Connection()
        transport.bind(connection)
        connection.open()
        session = connection.session()
        session.open()

        def exchange() -> None:
            sock.settimeout(0.1)
            for _ in range(10):
                pending = transport.pending()
                if pending > 0:
                    sock.sendall(transport.peek(pending))
                    transport.pop(pending)
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                if data:
                    transport.push(data)

        exchange()
        session.close()
        exchange()
        sock.sendall(bytes.fromhex("00000010020000000053" "16c003024341"))  # detach(handle=0, closed=true)
        time.sleep(0.3)


def test_ordinary_client_shutdowns_are_logged_quietly_and_garbage_still_warns(broker, caplog):
    """A client that exits without closing its connection, and one that detaches after ending its session
    (both what the SDK does), are an INFO line each; a garbage frame still is a WARNING."""
    script = ("import os, sys\nfrom azure.servicebus import ServiceBusClient, ServiceBusMessage\n"
              "client = ServiceBusClient.from_connection_string(sys.argv[1])\n"
              "client.get_queue_sender('busy').send_messages(ServiceBusMessage('x'))\nos._exit(0)\n")
    with caplog.at_level("INFO", logger="localbus"):
        subprocess.run([sys.executable, "-c", script, broker.connection_string], check=True, timeout=60)
        _detach_after_end(broker.port)
        time.sleep(1.0)
        quiet = [r for r in caplog.records if getattr(r, "event", None) == "client-shutdown"]
        assert len(quiet) >= 2, [r.getMessage() for r in caplog.records]
        assert _broker_warnings(caplog) == []
        _raw(broker.port, b"\x00" * 1000)
        time.sleep(0.5)
        assert any("malformed input" in message for message in _broker_warnings(caplog))
    _still_serves(broker)
