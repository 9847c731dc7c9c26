"""WebSocket service instances as real processes on the local broker and a real redis-server, real sockets.

Instances consume ``order-status`` from an in-process local broker (``localbus.embedded``) as competing
consumers; tests publish status events with the Service Bus SDK as the order pipeline does. The status
API is a small real HTTP server in the test process serving canned statuses, standing in for the
pipeline's ``GET /api/orders/{id}`` so each test decides what "current status" is.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSender
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from localbus.embedded import RunningBroker, running_broker
from service_platform.notify_tokens import DEFAULT_KEY_ID, NotifyTokenSigner
from local_servers.ports import popen_listening, wait_for_http
from local_servers.redis_server import RedisServer, running_redis

ROOT = Path(__file__).resolve().parents[3]
NOTIFY_SECRET = "test-notify-secret"
INTERNAL_SECRET = "test-internal-secret"
QUEUE = "order-status"


# ---------------------------------------------------------------------------------------------- helpers


class CannedStatusApi:
    """A real HTTP server answering ``GET /api/orders/{id}`` from ``statuses`` (404 for unknown ids), after
    ``delays[id]`` seconds for the ids given one."""

    def __init__(self) -> None:
        self.statuses: dict[str, dict] = {}
        self.delays: dict[str, float] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                cid = self.path.removeprefix("/api/orders/")
                time.sleep(api.delays.get(cid, 0))
                found = api.statuses.get(cid)
                body = json.dumps(found if found else {"title": "not found", "status": 404}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/api"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def set(self, cid: str, status: str, **fields: object) -> None:
        self.statuses[cid] = {"correlationId": cid, "status": status, "orderId": None, "total": None,
                              "currency": "EUR", "reason": None, "updatedAt": "2026-01-01T00:00:00Z", **fields}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Instance:
    """One ``websocket_service`` process on a free port, whose listening socket it is handed."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix=f"ws-{name}-", suffix=".log")[1])
        full_env = {**os.environ, **env, "WS_INSTANCE_ID": name, "PYTHONPATH": str(ROOT)}
        with self.log.open("wb") as out:
            self.process, self.port = popen_listening([sys.executable, "-m", "websocket_service"], env=full_env,
                                                      cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"{self.http}/healthz", self.process)
        except (TimeoutError, RuntimeError):
            self.process.kill()
            raise AssertionError(f"instance {name} did not start:\n{self.log.read_text()}") from None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, cid: str, token: str | None) -> str:
        query = f"correlationId={cid}" + (f"&token={token}" if token is not None else "")
        return f"ws://127.0.0.1:{self.port}/ws?{query}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.unlink(missing_ok=True)


def token(cid: str, ttl: int = 600) -> str:
    return NotifyTokenSigner(DEFAULT_KEY_ID, NOTIFY_SECRET.encode()).issue(cid, ttl)


def new_id() -> str:
    return str(uuid.uuid4())


async def follow(instance: Instance, cid: str, **kwargs: object) -> ClientConnection:
    return await connect(instance.ws_url(cid, token(cid)), proxy=None, compression=None, **kwargs)


async def next_frame(ws: ClientConnection, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def assert_silent(ws: ClientConnection, seconds: float = 0.4) -> None:
    with pytest.raises(TimeoutError):
        frame = await asyncio.wait_for(ws.recv(), seconds)
        pytest.fail(f"unexpected frame {frame}")


def publish(queue: ServiceBusSender, cid: str, status: str, **fields: object) -> None:
    """Send a status event the way the order pipeline does."""
    body = {"correlationId": cid, "status": status, "orderId": None, "total": None, "currency": "EUR",
            "reason": None, "updatedAt": "2026-01-01T00:00:01Z", **fields}
    queue.send_messages(ServiceBusMessage(json.dumps(body), message_id=f"{cid}:{status}", correlation_id=cid,
                                          content_type="application/json"))


@pytest.fixture(scope="module")
def status_api() -> Iterator[CannedStatusApi]:
    api = CannedStatusApi()
    yield api
    api.close()


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    with running_broker(in_memory=True) as running:
        yield running


@pytest.fixture(scope="module")
def queue(broker: RunningBroker) -> Iterator[ServiceBusSender]:
    with ServiceBusClient.from_connection_string(broker.connection_string) as client, \
            client.get_queue_sender(QUEUE) as sender:
        yield sender


@pytest.fixture
def launch(redis_server: RedisServer, status_api: CannedStatusApi, broker: RunningBroker):
    """Start instances sharing one registry prefix; all are stopped after the test."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    started: list[Instance] = []

    def start(name: str, *, consume: bool = True, redis_url: str | None = None, **extra: str) -> Instance:
        env = {
            "REDIS_URL": redis_url or redis_server.url, "STATUS_API_URL": status_api.url,
            "NOTIFY_TOKEN_SECRET": NOTIFY_SECRET, "WS_INTERNAL_SECRET": INTERNAL_SECRET,
            "WS_REGISTRY_PREFIX": prefix, "WS_REGISTRY_TTL_SECONDS": "3", "WS_HEARTBEAT_SECONDS": "5",
            **extra,
        }
        if consume:
            env |= {"ServiceBusConnection": broker.connection_string, "ORDER_STATUS_QUEUE": QUEUE}
        instance = Instance(name, env)
        started.append(instance)
        return instance

    start.prefix = prefix  # type: ignore[attr-defined]
    yield start
    for instance in started:
        instance.stop()


# ------------------------------------------------------------------------------------------------ tests


async def test_clients_on_each_instance_get_exactly_their_own_orders(launch, status_api, queue) -> None:
    a, b = launch("a"), launch("b")
    orders = {new_id(): inst for inst in (a, b) for _ in range(4)}
    sockets = {}
    for cid, inst in orders.items():
        status_api.set(cid, "Accepted")
        sockets[cid] = await follow(inst, cid)
        assert (await next_frame(sockets[cid]))["status"] == "Accepted"
    for cid in orders:
        publish(queue, cid, "Completed", orderId=1, total="3.00")
        publish(queue, new_id(), "Completed")  # nobody follows these
    for cid, ws in sockets.items():
        frame = await next_frame(ws)
        assert (frame["type"], frame["correlationId"], frame["status"], frame["total"]) == (
            "status", cid, "Completed", "3.00")
    for ws in sockets.values():
        await assert_silent(ws, 0.2)
        await ws.close()


async def test_events_consumed_by_another_instance_are_forwarded(launch, status_api, queue) -> None:
    consumer, holder = launch("consumer"), launch("holder", consume=False)
    cid = new_id()
    ws = await follow(holder, cid)
    await assert_silent(ws, 0.2)  # unknown to the status API yet: nothing to send
    publish(queue, cid, "Accepted")
    publish(queue, cid, "Accepted")
    publish(queue, cid, "Rejected", reason="SKU-9 is out of stock")
    assert [(f["status"], f["reason"]) for f in [await next_frame(ws), await next_frame(ws)]] == [
        ("Accepted", None), ("Rejected", "SKU-9 is out of stock")]
    await assert_silent(ws)
    await ws.close()
    assert consumer.process.poll() is None


async def test_late_subscriber_gets_the_current_status_at_once(launch, status_api) -> None:
    a = launch("a", consume=False)
    cid = new_id()
    status_api.set(cid, "Completed", orderId=42, total="19.90")
    async with await follow(a, cid) as ws:
        frame = await next_frame(ws, timeout=2)
        assert (frame["status"], frame["orderId"], frame["total"]) == ("Completed", 42, "19.90")
        await assert_silent(ws)


async def test_client_of_a_killed_instance_reconnects_elsewhere_and_gets_the_final_status(
        launch, status_api, queue) -> None:
    a, b = launch("a", consume=False), launch("b")
    cid = new_id()
    status_api.set(cid, "Accepted")
    ws = await follow(a, cid)
    assert (await next_frame(ws))["status"] == "Accepted"
    a.process.kill()
    a.process.wait()
    with pytest.raises(ConnectionClosed):
        await next_frame(ws)
    # The order completes while its registry entry still points at the dead instance.
    status_api.set(cid, "Completed", orderId=5, total="1.00")
    started = time.monotonic()
    publish(queue, cid, "Completed", orderId=5, total="1.00")
    async with await follow(b, cid) as again:
        frame = await next_frame(again)
        assert (frame["status"], frame["orderId"]) == ("Completed", 5)
    # B survives the failed forward to A and keeps routing promptly.
    other = new_id()
    async with await follow(b, other) as ws2:
        publish(queue, other, "Failed", reason="poison")
        assert (await next_frame(ws2))["status"] == "Failed"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("make_token", "status", "reason"), [
    (lambda cid: None, 401, "token is missing"),
    (lambda cid: "garbage", 401, "token is malformed"),
    (lambda cid: token(cid).rsplit(".", 1)[0] + "." + "A" * 43, 403, "does not match"),
    (lambda cid: "%C2%B2.abc", 401, "token is malformed"),  # a superscript digit: "²".isdigit() is True
    (lambda cid: "k1.99." + "%C3%A9" * 43, 401, "token is malformed"),  # a non-ASCII signature
    (lambda cid: "A" * 4000, 401, "token is malformed"),
    (lambda cid: NotifyTokenSigner(DEFAULT_KEY_ID, b"another-secret").issue(cid, 600), 403, "does not match"),
    (lambda cid: NotifyTokenSigner(DEFAULT_KEY_ID, NOTIFY_SECRET.encode()).issue(cid, -1), 403, "expired"),
    (lambda cid: token(new_id()), 403, "does not match this correlationId"),
])
async def test_bad_tokens_are_refused_at_the_handshake(launch, make_token, status: int, reason: str) -> None:
    a = launch("a", consume=False)
    cid = new_id()
    with pytest.raises(InvalidStatus) as refused:
        await connect(a.ws_url(cid, make_token(cid)), proxy=None)
    assert refused.value.response.status_code == status
    assert reason in refused.value.response.body.decode()


async def test_malformed_frames_get_an_error_frame_and_the_socket_stays_usable(launch, status_api) -> None:
    a = launch("a", consume=False)
    first, second = new_id(), new_id()
    status_api.set(second, "Completed", orderId=9)
    async with await follow(a, first) as ws:
        for frame, message in [
            ("{oops", "not valid JSON"),
            (json.dumps({"action": "jump", "correlationId": second}), "'action' must be"),
            (json.dumps({"action": "subscribe", "correlationId": second, "token": token(first)}),
             "subscription refused: token does not match"),
            (json.dumps({"action": "subscribe", "correlationId": second}), "'token' is required"),
            (json.dumps({"action": "subscribe", "correlationId": second, "token": "\u00b2.abc"}),
             "subscription refused: token is malformed"),
            (json.dumps({"action": "subscribe", "correlationId": second, "token": "k1.9." + "\u00e9" * 43}),
             "subscription refused: token is malformed"),
        ]:
            await ws.send(frame)
            reply = await next_frame(ws)
            assert reply["type"] == "error" and message in reply["message"]
        await ws.send(json.dumps({"action": "subscribe", "correlationId": second, "token": token(second)}))
        frame = await next_frame(ws)
        assert (frame["correlationId"], frame["status"], frame["orderId"]) == (second, "Completed", 9)


async def test_internal_endpoint_refuses_callers_without_the_secret(launch) -> None:
    a = launch("a", consume=False)
    body = {"events": [{"correlationId": new_id(), "status": "Completed"}]}
    async with httpx.AsyncClient() as client:
        refused = await client.post(f"{a.http}/internal/events", json=body)
        wrong = await client.post(f"{a.http}/internal/events", json=body, headers={"Authorization": "Bearer nope"})
        good = await client.post(f"{a.http}/internal/events", json=body,
                                 headers={"Authorization": f"Bearer {INTERNAL_SECRET}"})
    assert (refused.status_code, wrong.status_code, good.status_code) == (401, 401, 202)


async def test_redis_stopped_and_restarted_no_crash_and_routing_resumes(launch, status_api, queue) -> None:
    with running_redis() as registry_redis:
        a = launch("a", redis_url=registry_redis.url)
        b = launch("b", consume=False, redis_url=registry_redis.url)
        followed = new_id()
        ws = await follow(b, followed)
        registry_redis.stop()
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"{b.http}/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "unreachable"
            assert (await client.get(f"{b.http}/healthz")).status_code == 200
        # Current status on subscribe is still served while Redis is down.
        late = new_id()
        status_api.set(late, "Completed", orderId=77)
        async with await follow(a, late) as ws_late:
            assert (await next_frame(ws_late))["orderId"] == 77
        registry_redis.start()  # empty: persistence is off, like a cache that lost its data
        await asyncio.sleep(1.5)  # one registry refresh (TTL 3 s / 3)
        publish(queue, followed, "Completed", orderId=8)
        frame = await next_frame(ws)
        assert (frame["status"], frame["orderId"]) == ("Completed", 8)
        await ws.close()
        assert a.process.poll() is None and b.process.poll() is None
        assert "Redis is reachable again" in b.logs()


async def test_slow_client_overflow_closes_only_that_client(launch, status_api) -> None:
    a = launch("a", consume=False, WS_SEND_QUEUE_LIMIT="4", WS_MAX_SUBSCRIPTIONS_PER_SOCKET="1000",
               WS_MAX_FRAMES_PER_10S="1000")
    slow_orders = [new_id() for _ in range(300)]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", a.port))
    slow = await connect(a.ws_url(slow_orders[0], token(slow_orders[0])), sock=sock, proxy=None,
                         compression=None, max_queue=1, max_size=None)
    for cid in slow_orders[1:]:
        await slow.send(json.dumps({"action": "subscribe", "correlationId": cid, "token": token(cid)}))
    healthy_order = new_id()
    healthy = await follow(a, healthy_order)
    await asyncio.sleep(0.5)  # let the subscriptions land
    big_reason = "x" * 65536
    headers = {"Authorization": f"Bearer {INTERNAL_SECRET}"}
    async with httpx.AsyncClient(timeout=10) as client:
        for start in range(0, len(slow_orders), 50):
            batch = [{"correlationId": cid, "status": "Failed", "reason": big_reason}
                     for cid in slow_orders[start:start + 50]]
            response = await client.post(f"{a.http}/internal/events", json={"events": batch}, headers=headers)
            assert response.status_code == 202
        sent = time.monotonic()
        await client.post(f"{a.http}/internal/events", headers=headers,
                          json={"events": [{"correlationId": healthy_order, "status": "Completed"}]})
    assert (await next_frame(healthy, timeout=2))["status"] == "Completed"
    assert time.monotonic() - sent < 1.0, "a slow client must not delay the others"
    received = 0
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(slow.recv(), 10)
            received += 1
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013, closed.value
    assert received < len(slow_orders)
    await healthy.close()


async def test_sigterm_closes_sockets_with_1012_and_deregisters(launch, redis_server) -> None:
    a = launch("a", consume=False)
    cid = new_id()
    ws = await follow(a, cid)
    key = f"{launch.prefix}{cid}"
    registry = redis.Redis.from_url(redis_server.url, decode_responses=True)
    deadline = time.monotonic() + 5
    while "a" not in registry.hgetall(key) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert "a" in registry.hgetall(key)
    a.process.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed) as closed:
        await next_frame(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    # uvicorn re-raises the signal once its graceful shutdown is over, so the exit status says SIGTERM.
    assert await asyncio.to_thread(a.process.wait, 15) in (0, -signal.SIGTERM)
    assert '"message": "stopped"' in a.logs(), a.logs()
    assert "a" not in registry.hgetall(key)
    registry.close()


async def test_heartbeat_drops_a_peer_that_stopped_answering(launch) -> None:
    """A client that completed the handshake and then went silent (no pongs) is closed and forgotten."""
    a = launch("a", consume=False, WS_HEARTBEAT_SECONDS="0.5")
    cid = new_id()
    raw = socket.create_connection(("127.0.0.1", a.port))
    raw.sendall((f"GET /ws?correlationId={cid}&token={token(cid)} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{a.http}/healthz")).json()["sockets"] == 1
        deadline = time.monotonic() + 10
        while (await client.get(f"{a.http}/healthz")).json()["sockets"] != 0:
            assert time.monotonic() < deadline, "a silent peer was never dropped"
            await asyncio.sleep(0.1)
    raw.close()


async def test_a_slow_status_read_holds_up_neither_the_sockets_other_orders_nor_its_heartbeat(
        launch, status_api) -> None:
    """A subscription's current status comes from the status API. While one read is slow, the socket is
    still read: its other subscriptions get their status at once, and its pongs (which would otherwise wait
    behind its next frames) keep a healthy client from being closed for a missed heartbeat."""
    a = launch("a", consume=False, WS_HEARTBEAT_SECONDS="0.5", WS_STATUS_API_TIMEOUT_SECONDS="10")
    first, slow, others = new_id(), new_id(), [new_id() for _ in range(20)]
    status_api.set(slow, "Completed", orderId=3)
    status_api.delays[slow] = 4.0
    for cid in others:
        status_api.set(cid, "Accepted")
    ws = await follow(a, first, ping_interval=None)
    started = time.monotonic()
    for cid in [slow, *others]:
        await ws.send(json.dumps({"action": "subscribe", "correlationId": cid, "token": token(cid)}))
    got = [await next_frame(ws) for _ in others]
    assert {f["correlationId"] for f in got} == set(others) and {f["status"] for f in got} == {"Accepted"}
    assert time.monotonic() - started < 3.0, "the other orders waited for the slow read"
    final = await next_frame(ws, timeout=10)
    assert (final["correlationId"], final["status"]) == (slow, "Completed")
    await assert_silent(ws, 1.5)  # several heartbeats later the socket is still open
    assert ws.close_code is None
    await ws.close()


async def test_upgrades_elsewhere_than_ws_are_refused(launch) -> None:
    a = launch("a", consume=False)
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"ws://127.0.0.1:{a.port}/elsewhere", proxy=None)
    assert refused.value.response.status_code == 404



# ---------------------------------------------------------------------------------------------- limits

async def test_over_the_instance_cap_the_handshake_is_503_and_a_freed_place_is_taken_again(launch) -> None:
    a = launch("a", consume=False, WS_MAX_CONNECTIONS="3")
    sockets = [await follow(a, new_id()) for _ in range(3)]
    with pytest.raises(InvalidStatus) as refused:
        await follow(a, new_id())
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "5"
    await sockets.pop().close()
    await asyncio.sleep(0.2)
    sockets.append(await follow(a, new_id()))
    for ws in sockets:
        await ws.close()


async def test_one_client_address_gets_at_most_its_share_of_sockets(launch) -> None:
    a = launch("a", consume=False, WS_MAX_CONNECTIONS_PER_CLIENT="2", WS_CLIENT_ADDRESS_HEADER="x-real-ip")
    mine = [await follow(a, new_id(), additional_headers={"X-Real-IP": "203.0.113.7"}) for _ in range(2)]
    with pytest.raises(InvalidStatus) as refused:
        await follow(a, new_id(), additional_headers={"X-Real-IP": "203.0.113.7"})
    assert refused.value.response.status_code == 429
    other = await follow(a, new_id(), additional_headers={"X-Real-IP": "198.51.100.1"})  # another client is served
    for ws in [*mine, other]:
        await ws.close()


async def test_a_socket_following_nothing_is_closed_after_the_idle_time_whatever_it_sends(launch) -> None:
    a = launch("a", consume=False, WS_IDLE_SECONDS="1")
    cid = new_id()
    async with await follow(a, cid) as ws:
        await ws.send(json.dumps({"action": "unsubscribe", "correlationId": cid}))
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # junk frames do not keep it open
                await ws.send("{junk")
                await asyncio.wait_for(ws.recv(), 5)
                await asyncio.sleep(0.1)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert "following no order" in closed.value.rcvd.reason
        assert asyncio.get_running_loop().time() - started < 5
    async with await follow(a, new_id()) as kept:  # a socket that follows an order stays open
        await asyncio.sleep(1.5)
        await kept.ping()


async def test_a_frame_above_4_kib_closes_the_socket_with_1009(launch) -> None:
    a = launch("a", consume=False)
    async with await follow(a, new_id(), max_size=None) as ws:
        await ws.send("x" * 5000)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_a_flood_of_frames_closes_the_socket_with_1008(launch) -> None:
    a = launch("a", consume=False, WS_MAX_FRAMES_PER_10S="20")
    async with await follow(a, new_id()) as ws:
        answered = 0
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(200):
                await ws.send("{junk")
                await asyncio.wait_for(ws.recv(), 5)  # an error frame each
                answered += 1
        assert answered == 20
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "more than 20 frames" in closed.value.rcvd.reason


async def test_an_event_right_after_redis_came_back_empty_still_reaches_the_open_socket(launch, queue) -> None:
    """The registry's TTL is long here (the periodic refresh would come far too late): the instance holding
    the socket re-registers because the registry's epoch changed, and the instance that took the event
    routes it again until then instead of completing it for nobody."""
    with running_redis() as registry_redis:
        launch("a", redis_url=registry_redis.url, WS_REGISTRY_TTL_SECONDS="120")  # takes the events
        b = launch("b", consume=False, redis_url=registry_redis.url, WS_REGISTRY_TTL_SECONDS="120")
        followed = new_id()
        async with await follow(b, followed) as ws:
            await asyncio.sleep(1.5)  # both instances have seen the registry's epoch
            registry_redis.stop()
            registry_redis.start()  # empty, and nobody has re-registered yet
            publish(queue, followed, "Completed", orderId=21)
            frame = await next_frame(ws, timeout=15)
            assert (frame["status"], frame["orderId"]) == ("Completed", 21)
        assert "the registry came back empty" in b.logs()


async def test_a_subscribe_whose_registration_failed_is_registered_once_redis_answers(
        launch, status_api, queue) -> None:
    """Redis is down when the client subscribes, so registering the socket's holder fails. The registry's
    TTL is long (its periodic refresh would come far too late): the registration is retried as soon as
    Redis answers, and then the event reaches the socket."""
    with running_redis() as registry_redis:
        launch("a", redis_url=registry_redis.url, WS_REGISTRY_TTL_SECONDS="120")  # takes the events
        b = launch("b", consume=False, redis_url=registry_redis.url, WS_REGISTRY_TTL_SECONDS="120")
        followed = new_id()
        status_api.set(followed, "Accepted")
        registry_redis.stop()
        async with await follow(b, followed) as ws:
            assert (await next_frame(ws))["status"] == "Accepted"  # the status read does not need Redis
            registry_redis.start()
            registry = redis.Redis.from_url(registry_redis.url)
            deadline = time.monotonic() + 10
            while not registry.exists(f"{launch.prefix}{followed}"):
                assert time.monotonic() < deadline, f"the failed registration was never retried:\n{b.logs()[-3000:]}"
                await asyncio.sleep(0.1)
            registry.close()
            publish(queue, followed, "Completed", orderId=5)
            frame = await next_frame(ws, timeout=10)
            assert (frame["status"], frame["orderId"]) == ("Completed", 5)
