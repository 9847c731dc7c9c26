"""The WebSocket service's adapters against real servers: redis-server, HTTP servers on free ports."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis.asyncio as aioredis

from local_servers.ports import free_port
from local_servers.redis_server import RedisServer, running_redis
from websocket_service.core import StatusEvent
from websocket_service.forwarder import HttpEventForwarder
from websocket_service.ports import RegistryUnavailable, StatusUnavailable
from websocket_service.redis_socket_holders import RedisSocketHolderRegistry
from websocket_service.status_api import StatusApiClient


def registry(url: str, instance_id: str, prefix: str, ttl: float = 30, clock=time.time) -> RedisSocketHolderRegistry:
    return RedisSocketHolderRegistry.from_url(url, instance_id=instance_id, internal_url=f"http://{instance_id}:1",
                                             ttl_seconds=ttl, prefix=prefix, clock=clock)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


async def test_registry_records_instances_with_ttl_and_forgets_on_deregister(redis_server: RedisServer,
                                                                             prefix: str) -> None:
    a, b = registry(redis_server.url, "a", prefix, ttl=30), registry(redis_server.url, "b", prefix, ttl=30)
    cid = str(uuid.uuid4())
    try:
        assert await a.register([cid]) and await b.register([cid])
        found = await a.lookup([cid, str(uuid.uuid4())])
        assert sorted((e.instance_id, e.internal_url) for e in found[cid]) == [("a", "http://a:1"), ("b", "http://b:1")]
        assert len(found) == 1
        raw = aioredis.Redis.from_url(redis_server.url)
        assert 0 < await raw.ttl(f"{prefix}{cid}") <= 30
        await raw.aclose()
        await a.deregister([cid])
        assert [e.instance_id for e in (await b.lookup([cid]))[cid]] == ["b"]
    finally:
        await a.aclose()
        await b.aclose()


async def test_entries_of_an_instance_that_stopped_refreshing_expire_on_their_own(redis_server: RedisServer,
                                                                                  prefix: str) -> None:
    now = [1000.0]
    dead = registry(redis_server.url, "dead", prefix, ttl=5, clock=lambda: now[0])
    cid = str(uuid.uuid4())
    try:
        await dead.register([cid])
        [entry] = (await dead.lookup([cid]))[cid]
        assert entry.until == 1005.0, "a reader compares `until` with its clock and skips the entry after it"
    finally:
        await dead.aclose()


async def test_registry_down_fails_fast_and_logs_once(caplog: pytest.LogCaptureFixture, prefix: str) -> None:
    caplog.set_level(logging.INFO, logger="websocket_service")
    with running_redis() as server:
        reg = registry(server.url, "a", prefix)
        try:
            cid = str(uuid.uuid4())
            assert await reg.register([cid])
            server.stop()
            started = time.monotonic()
            assert not await reg.register([cid])
            assert not await reg.deregister([cid])
            assert not await reg.ping()
            with pytest.raises(RegistryUnavailable):
                await reg.lookup([cid])
            assert time.monotonic() - started < 3
            assert sum("Redis is unreachable" in r.getMessage() for r in caplog.records) == 1
            server.start()
            assert await reg.register([cid])
            assert [e.instance_id for e in (await reg.lookup([cid]))[cid]] == ["a"]
            assert any("reachable again" in r.getMessage() for r in caplog.records)
        finally:
            await reg.aclose()


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _reply(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


KNOWN = "0b6f8f53-7d0a-4c55-9a0e-7d7f3f0d2a11"
BROKEN = "1b6f8f53-7d0a-4c55-9a0e-7d7f3f0d2a11"


@pytest.fixture
def status_server() -> Iterator[_Server]:
    """A real HTTP server shaped like the status API (the order pipeline's own runs in its e2e tests)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == f"/api/orders/{KNOWN}":
                _reply(self, 200, {"correlationId": KNOWN, "status": "Completed", "orderId": 4, "total": "2.50",
                                   "currency": "EUR", "reason": None, "updatedAt": "2026-01-01T00:00:00Z"})
            elif self.path == f"/api/orders/{BROKEN}":
                _reply(self, 500, {"title": "boom"})
            else:
                _reply(self, 404, {"title": "not found"})

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(Handler)
    yield server
    server.close()


async def test_status_api_client_maps_answers(status_server: _Server) -> None:
    client = StatusApiClient.create(status_server.url + "/api", 2.0)
    try:
        current = await client.current(KNOWN)
        assert current == StatusEvent(KNOWN, "Completed", 4, "2.50", "EUR", None, "2026-01-01T00:00:00Z")
        assert await client.current(str(uuid.uuid4())) is None
        with pytest.raises(StatusUnavailable, match="500"):
            await client.current(BROKEN)
    finally:
        await client.aclose()


async def test_status_api_client_unreachable() -> None:
    client = StatusApiClient.create(f"http://127.0.0.1:{free_port()}/api", 1.0)
    try:
        with pytest.raises(StatusUnavailable, match="unreachable"):
            await client.current(KNOWN)
    finally:
        await client.aclose()


@pytest.fixture
async def silent_listener() -> AsyncIterator[str]:
    """A peer that accepts TCP connections and never answers: a hung instance."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


async def test_forward_to_a_dead_or_hung_instance_fails_fast(silent_listener: str) -> None:
    forwarder = HttpEventForwarder.create("s", timeout_seconds=0.5)
    event = StatusEvent(KNOWN, "Completed")
    try:
        started = time.monotonic()
        assert not await forwarder.forward(f"http://127.0.0.1:{free_port()}", [event])
        assert not await forwarder.forward(silent_listener, [event])
        assert time.monotonic() - started < 2
    finally:
        await forwarder.aclose()


async def test_forward_posts_events_with_the_secret() -> None:
    seen: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.headers["Authorization"], body))
            _reply(self, 202, {"delivered": 1})

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(Handler)
    forwarder = HttpEventForwarder.create("s3cret", timeout_seconds=1)
    try:
        assert await forwarder.forward(server.url, [StatusEvent(KNOWN, "Rejected", reason="no stock")])
    finally:
        await forwarder.aclose()
        server.close()
    assert seen == [("Bearer s3cret", {"events": [{"correlationId": KNOWN, "status": "Rejected", "orderId": None,
                                                   "total": None, "currency": None, "reason": "no stock",
                                                   "updatedAt": None, "attempt": 1}]})]
    await asyncio.sleep(0)
