"""The Starlette shell: handshake, frame loop, internal forward endpoint, health, the page.

Everything here is translation between HTTP/WebSocket and the service layer; the decisions live in
``core`` and ``notifier``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from orders.notify_tokens import InvalidNotifyToken, verify_notify_token
from websocket_service.core import (
    FrameError,
    InvalidEvent,
    Outbox,
    SocketSubscriptions,
    StatusEvent,
    Subscribe,
    error_frame,
    is_correlation_id,
    parse_client_frame,
)
from websocket_service.forwarder import INTERNAL_EVENTS_PATH

if TYPE_CHECKING:
    from websocket_service.bootstrap import Services

log = logging.getLogger("websocket_service.app")

STATIC_DIR = Path(__file__).parent / "static"
CLOSE_OVERFLOW = 1013
MAX_INTERNAL_BODY = 8 * 1024 * 1024


class SocketSession:
    """One accepted socket: its subscriptions and its bounded outbox, drained by a writer task on demand.

    Idle sockets own no writer task: one is started when a frame is queued and ends when the outbox is
    empty, which keeps the memory of a held connection small.
    """

    __slots__ = ("_closing", "_on_overflow", "_writer", "outbox", "subscriptions", "websocket")

    def __init__(self, websocket: WebSocket, max_subscriptions: int, send_queue_limit: int, on_overflow) -> None:
        self.websocket = websocket
        self.subscriptions = SocketSubscriptions(max_subscriptions)
        self.outbox = Outbox(send_queue_limit)
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._on_overflow = on_overflow

    def deliver(self, event: StatusEvent) -> None:
        if self.subscriptions.admit(event):
            self._queue(event.to_frame())

    def send_error(self, message: str) -> None:
        self._queue(error_frame(message))

    def _queue(self, frame: str) -> None:
        if self._closing:
            return
        if not self.outbox.offer(frame):
            self._overflow()
            return
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while (frame := self.outbox.take()) is not None:
                await self.websocket.send_text(frame)
        except Exception:  # noqa: BLE001 - the peer went away; the receive loop sees the disconnect
            self._closing = True
        finally:
            self._writer = None

    def _overflow(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()
        self._on_overflow(self)

    def stop(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()


def _handshake_refusal(services: Services, correlation_id: str | None, token: str | None) -> Response | None:
    if not correlation_id:
        return PlainTextResponse("correlationId is missing: connect to /ws?correlationId=<id>&token=<notifyToken>", 400)
    if not is_correlation_id(correlation_id):
        return PlainTextResponse("correlationId is not a UUID", 400)
    if not token:
        return PlainTextResponse("token is missing: pass the notifyToken returned with the order", 401)
    try:
        verify_notify_token(services.notify_secret, token, correlation_id)
    except InvalidNotifyToken as exc:
        status = 401 if str(exc) in ("token is missing", "token is malformed") else 403
        return PlainTextResponse(str(exc), status)
    return None


def build_app(services: Services) -> Starlette:
    """The ASGI app for ``services``; nothing connects before the lifespan starts."""
    settings = services.settings
    notifier = services.notifier
    sessions: set[SocketSession] = set()
    background: set[asyncio.Task[object]] = set()
    internal_auth = f"Bearer {settings.internal_secret.get_secret_value()}".encode()

    def spawn(coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    def on_overflow(session: SocketSession) -> None:
        log.warning("client too slow: send queue overflowed, closing it",
                    extra={"correlationId": next(iter(session.subscriptions.ids), None)})
        spawn(notifier.disconnect(session))

        async def close() -> None:
            with contextlib.suppress(Exception):
                await session.websocket.close(CLOSE_OVERFLOW, "send queue overflow: client too slow")

        spawn(close())

    async def websocket_endpoint(websocket: WebSocket) -> None:
        correlation_id = websocket.query_params.get("correlationId")
        refusal = _handshake_refusal(services, correlation_id, websocket.query_params.get("token"))
        if refusal is not None:
            log.info("handshake refused", extra={"correlationId": correlation_id, "httpStatus": refusal.status_code,
                                                "reason": bytes(refusal.body).decode()})
            await websocket.send_denial_response(refusal)
            return
        assert correlation_id is not None
        if services.shutting_down:
            await websocket.send_denial_response(PlainTextResponse("shutting down: connect again", 503))
            return
        await websocket.accept()
        session = SocketSession(websocket, settings.max_subscriptions, settings.send_queue_limit, on_overflow)
        sessions.add(session)
        try:
            await notifier.subscribe(session, correlation_id)
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                try:
                    command = parse_client_frame(text if text is not None else message.get("bytes") or b"")
                    if isinstance(command, Subscribe):
                        try:
                            verify_notify_token(services.notify_secret, command.token, command.correlation_id)
                        except InvalidNotifyToken as exc:
                            raise FrameError(f"subscription refused: {exc}") from None
                        await notifier.subscribe(session, command.correlation_id)
                    else:
                        await notifier.unsubscribe(session, command.correlation_id)
                except FrameError as exc:
                    session.send_error(str(exc))
        except WebSocketDisconnect:
            pass
        finally:
            sessions.discard(session)
            session.stop()
            await notifier.disconnect(session)

    async def internal_events(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), internal_auth):
            return JSONResponse({"error": "missing or wrong internal secret (WS_INTERNAL_SECRET)"}, 401)
        body = await request.body()
        if len(body) > MAX_INTERNAL_BODY:
            return JSONResponse({"error": "body too large"}, 413)
        try:
            data = json.loads(body)
            events = [StatusEvent.from_mapping(item) for item in data["events"]]
        except (ValueError, KeyError, TypeError, InvalidEvent) as exc:
            return JSONResponse({"error": f'expected {{"events": [status event, ...]}}: {exc}'}, 400)
        delivered = notifier.deliver_local(events)
        return JSONResponse({"delivered": delivered}, 202)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "instanceId": settings.instance_id, "sockets": len(sessions)})

    async def readyz(request: Request) -> Response:
        redis_ok = await services.registry.ping()
        broker = services.consumer
        broker_ok = broker is not None and broker.connected
        checks = {
            "redis": "ok" if redis_ok else "unreachable",
            "broker": "ok" if broker_ok else ("not configured" if broker is None else "unreachable"),
        }
        ready = redis_ok and broker_ok and not services.shutting_down
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    async def api_proxy(request: Request) -> Response:
        """Same-origin access to the order API for the page (the Functions host sets no CORS headers)."""
        client = services.api_client
        assert client is not None
        path = request.url.path.removeprefix("/api/")
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "idempotency-key", "accept", "traceparent")}
        try:
            upstream = await client.request(request.method, path, content=await request.body(), headers=headers)
        except httpx.HTTPError as exc:
            return JSONResponse({"title": "order API unreachable", "detail": repr(exc),
                                 "status": 502}, 502, media_type="application/problem+json")
        passed = {k: v for k, v in upstream.headers.items()
                  if k.lower() in ("content-type", "location", "retry-after")}
        return Response(upstream.content, upstream.status_code, headers=passed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            services.shutting_down = True
            for session in list(sessions):
                session.stop()
            for task in list(background):
                task.cancel()
            await services.stop()

    routes: list = [
        WebSocketRoute("/ws", websocket_endpoint),
        Route(INTERNAL_EVENTS_PATH, internal_events, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    if settings.proxy_api:
        routes += [
            Route("/api/products", api_proxy, methods=["GET"]),
            Route("/api/orders", api_proxy, methods=["POST"]),
            Route("/api/orders/{correlation_id}", api_proxy, methods=["GET"]),
        ]
    routes.append(Mount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="page"))
    return Starlette(routes=routes, lifespan=lifespan)
