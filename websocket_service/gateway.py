"""The WebSocket side of the service, on the ``websockets`` library's own connection objects.

uvicorn serves HTTP (the page, health, the internal endpoint) and hands every upgrade request on the same
port to ``SocketGateway.protocol_factory``, which answers it with a ``websockets`` ``ServerConnection``
instead of an ASGI WebSocket. Measured at 10,000 idle sockets, uvicorn's ASGI WebSocket costs about
25 KiB per socket behind Starlette (20.5 KiB with a bare ASGI callable) against about 15 KiB for
``websockets`` itself; this keeps the ASGI shell for HTTP and the lean path for sockets
(docs/websocket-service.md has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from service_platform.notify_tokens import InvalidNotifyToken, NotifyTokenVerifier
from websocket_service.core import (
    FrameError,
    Outbox,
    SocketSubscriptions,
    StatusEvent,
    Subscribe,
    error_frame,
    is_correlation_id,
    parse_client_frame,
)
from websocket_service.notifier import StatusNotifier

log = logging.getLogger("websocket_service.gateway")

WS_PATH = "/ws"
CLOSE_OVERFLOW = 1013
CLOSE_RESTART = 1012
MAX_INCOMING_FRAME = 64 * 1024


class SocketSession:
    """One open socket: its subscriptions and its bounded outbox, drained by a writer task on demand.

    Idle sockets own no writer task; one starts (eagerly, so an unblocked send costs no loop turn) when a
    frame is queued, and ends when the outbox is empty.
    """

    __slots__ = ("_closing", "_gateway", "_writer", "connection", "outbox", "subscriptions")

    def __init__(self, connection: ServerConnection, gateway: SocketGateway) -> None:
        self.connection = connection
        self.subscriptions = SocketSubscriptions(gateway.max_subscriptions)
        self.outbox = Outbox(gateway.send_queue_limit)
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._gateway = gateway

    def deliver(self, event: StatusEvent) -> None:
        if self.subscriptions.admit(event):
            self._queue(event.to_frame())

    def send_error(self, message: str) -> None:
        self._queue(error_frame(message))

    def _queue(self, frame: str) -> None:
        if self._closing:
            return
        if not self.outbox.offer(frame):
            self._closing = True
            self._gateway.overflowed(self)
            return
        if self._writer is None:
            self._writer = asyncio.eager_task_factory(asyncio.get_running_loop(), self._drain())
            if self._writer.done():
                self._writer = None

    async def _drain(self) -> None:
        try:
            while (frame := self.outbox.take()) is not None:
                await self.connection.send(frame)
        except ConnectionClosed:
            self._closing = True
        finally:
            self._writer = None

    def stop(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None


class SocketGateway:
    """Handshake (token check), frame loop and shutdown of the sockets of one instance."""

    def __init__(
        self,
        notifier: StatusNotifier,
        notify_tokens: NotifyTokenVerifier,
        *,
        max_subscriptions: int,
        send_queue_limit: int,
        heartbeat_seconds: float,
        per_message_deflate: bool = False,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.notifier = notifier
        self.notify_tokens = notify_tokens
        self.max_subscriptions = max_subscriptions
        self.send_queue_limit = send_queue_limit
        self.heartbeat_seconds = heartbeat_seconds
        self.per_message_deflate = per_message_deflate
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.sessions: set[SocketSession] = set()
        # What ServerConnection expects of its server:
        self.handler_tasks: set[asyncio.Task[None]] = set()
        self._serving = True
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ the server face websockets uses
    def is_serving(self) -> bool:
        return self._serving

    def protocol_factory(self, **_uvicorn_state: object) -> ServerConnection:
        """Called by uvicorn for each upgrade request; returns the asyncio protocol that takes the socket over."""
        extensions = [ServerPerMessageDeflateFactory()] if self.per_message_deflate else None
        protocol = ServerProtocol(extensions=extensions, max_size=MAX_INCOMING_FRAME, logger=log)
        return ServerConnection(protocol, self, ping_interval=self.heartbeat_seconds,  # type: ignore[arg-type]
                                ping_timeout=self.heartbeat_seconds, close_timeout=self.close_timeout,
                                max_queue=16)

    async def handler(self, connection: ServerConnection) -> None:
        try:
            async with asyncio.timeout(self.open_timeout):
                await connection.handshake(self._check_handshake, None, None)
            if connection.protocol.state is not OPEN:
                connection.transport.abort()
                return
            connection.start_keepalive()
            async with connection:
                await self._serve(connection)
        except Exception:  # noqa: BLE001 - never leak a socket, whatever failed
            log.exception("socket handler failed")
            connection.transport.abort()
        finally:
            self.handler_tasks.discard(asyncio.current_task())  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------ the protocol
    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        target = urlsplit(request.path)
        if target.path != WS_PATH:
            return connection.respond(404, f"no WebSocket endpoint at {target.path}: use {WS_PATH}\n")
        query = parse_qs(target.query)
        correlation_id = query.get("correlationId", [None])[0]
        token = query.get("token", [None])[0]
        if not correlation_id:
            return connection.respond(400, "correlationId is missing: connect to /ws?correlationId=<id>&token=<notifyToken>\n")
        if not is_correlation_id(correlation_id):
            return connection.respond(400, "correlationId is not a UUID\n")
        if not token:
            return connection.respond(401, "token is missing: pass the notifyToken returned with the order\n")
        try:
            self.notify_tokens.verify(token, correlation_id)
        except InvalidNotifyToken as exc:
            status = 401 if exc.malformed else 403
            log.info("handshake refused", extra={"correlationId": correlation_id, "httpStatus": status,
                                                "reason": str(exc)})
            return connection.respond(status, f"{exc}\n")
        return None

    async def _serve(self, connection: ServerConnection) -> None:
        correlation_id = parse_qs(urlsplit(connection.request.path).query)["correlationId"][0]  # type: ignore[union-attr]
        session = SocketSession(connection, self)
        self.sessions.add(session)
        try:
            await self.notifier.subscribe(session, correlation_id)
            async for message in connection:
                try:
                    command = parse_client_frame(message)
                    if isinstance(command, Subscribe):
                        try:
                            self.notify_tokens.verify(command.token, command.correlation_id)
                        except InvalidNotifyToken as exc:
                            raise FrameError(f"subscription refused: {exc}") from None
                        await self.notifier.subscribe(session, command.correlation_id)
                    else:
                        await self.notifier.unsubscribe(session, command.correlation_id)
                except FrameError as exc:
                    session.send_error(str(exc))
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)
            session.stop()
            await self.notifier.disconnect(session)

    def overflowed(self, session: SocketSession) -> None:
        """A client stopped reading: close it so it costs nothing more and reconnects to read current status."""
        log.warning("client too slow: send queue overflowed, closing it",
                    extra={"correlationId": next(iter(session.subscriptions.ids), None)})
        session.stop()
        self._spawn(self.notifier.disconnect(session))
        self._spawn(session.connection.close(CLOSE_OVERFLOW, "send queue overflow: client too slow"))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def shutdown(self, code: int = CLOSE_RESTART, reason: str = "service restart: reconnect") -> None:
        """Refuse new sockets (503) and close open ones with ``code`` so clients reconnect elsewhere."""
        self._serving = False
        closing = [asyncio.create_task(s.connection.close(code, reason)) for s in list(self.sessions)]
        if closing:
            await asyncio.wait(closing, timeout=self.close_timeout + 1)
        if self.handler_tasks:
            await asyncio.wait(list(self.handler_tasks), timeout=self.close_timeout + 1)
        for task in list(self._background):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._background, return_exceptions=True)


ProtocolFactory = Callable[..., ServerConnection]
