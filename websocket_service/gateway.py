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
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opentelemetry.trace import Span
from websockets.asyncio.server import ServerConnection, broadcast
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
from websocket_service import telemetry
from websocket_service.notifier import StatusNotifier

log = logging.getLogger("websocket_service.gateway")

WS_PATH = "/ws"
CLOSE_OVERFLOW = 1013
CLOSE_RESTART = 1012
CLOSE_IDLE = 1000
CLOSE_POLICY = 1008
FRAME_WINDOW_SECONDS = 10.0
# Client frames are subscribe/unsubscribe commands of a few hundred bytes. A bigger frame closes the socket
# (1009), and at most MAX_QUEUED_FRAMES wait while a subscribe is under way: what a hostile socket can make
# this instance hold is bounded to about MAX_INCOMING_FRAME x MAX_QUEUED_FRAMES.
MAX_INCOMING_FRAME = 4 * 1024
MAX_QUEUED_FRAMES = 4
# Kernel buffers per socket. Unbounded, Linux grows them to megabytes for a peer that floods or never reads,
# and asyncio hands over up to 256 KiB per read: thousands of hostile sockets would hold gigabytes (and
# socket buffers count against the pod's memory limit). Status frames are small; these are plenty.
SOCKET_RECEIVE_BUFFER = 16 * 1024
SOCKET_SEND_BUFFER = 64 * 1024


class BoundedServerConnection(ServerConnection):
    """A ``ServerConnection`` whose kernel socket buffers are bounded from the moment it takes the socket over."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_RECEIVE_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        super().connection_made(transport)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """What one instance accepts (docs/websocket-service.md has the settings)."""

    max_connections: int = 10_000
    max_connections_per_client: int = 100
    idle_seconds: float = 30.0  # a socket following no order is closed after this long
    max_frames_per_window: int = 120  # client frames per FRAME_WINDOW_SECONDS; more closes the socket (1008)
    client_address_header: str | None = None  # e.g. x-real-ip behind the ingress; None: the peer address


class SocketSession:
    """One open socket: its subscriptions and its bounded outbox, drained by a writer task on demand.

    Idle sockets own no writer task; one starts (eagerly, so an unblocked send costs no loop turn) when a
    frame is queued, and ends when the outbox is empty.
    """

    __slots__ = ("_closing", "_gateway", "_subscribing", "_writer", "connection", "outbox", "subscriptions")

    def __init__(self, connection: ServerConnection, gateway: SocketGateway) -> None:
        self.connection = connection
        self.subscriptions = SocketSubscriptions(gateway.max_subscriptions)
        self.outbox = Outbox(gateway.send_queue_limit)
        self._writer: asyncio.Task[None] | None = None
        self._subscribing: set[asyncio.Task[None]] = set()
        self._closing = False
        self._gateway = gateway

    def subscribe(self, notifier: StatusNotifier, correlation_id: str) -> None:
        """Follow an order without waiting for its current status to be read.

        The read goes to the status API and can take seconds when that API is slow; meanwhile this socket
        must still be read, or the client's pongs wait behind its next frames and a healthy client is closed
        for a missed heartbeat (1011). A refusal (``FrameError``) comes back as an error frame.
        """
        task = asyncio.eager_task_factory(asyncio.get_running_loop(), notifier.subscribe(self, correlation_id))
        if task.done():
            self._subscribed(task)
            return
        self._subscribing.add(task)
        task.add_done_callback(self._subscribed)

    def _subscribed(self, task: asyncio.Task[None]) -> None:
        self._subscribing.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, FrameError):
            self.send_error(str(exc))
        elif exc is not None:
            log.error("subscribing failed", exc_info=exc,
                      extra={"correlationId": next(iter(self.subscriptions.ids), None)})

    async def stop_subscribing(self) -> None:
        for task in list(self._subscribing):
            task.cancel()
        if self._subscribing:
            await asyncio.gather(*self._subscribing, return_exceptions=True)

    def deliver(self, event: StatusEvent) -> None:
        if self.subscriptions.admit(event):
            self._queue(event.to_frame(), telemetry.start_push(event))

    def send_error(self, message: str) -> None:
        self._queue(error_frame(message), None)

    def _queue(self, frame: str, push: Span | None) -> None:
        if self._closing:
            telemetry.push_abandoned(push, "socket closing")
            return
        if not self.outbox.offer((frame, push)):
            telemetry.push_abandoned(push, "send queue overflowed")
            self._closing = True
            self._gateway.overflowed(self)
            return
        if self._writer is None:
            if self._write_now():
                return
            self._writer = asyncio.eager_task_factory(asyncio.get_running_loop(), self._drain())
            if self._writer.done():
                self._writer = None

    def _write_now(self) -> bool:
        """Write the one queued frame straight to the transport when nothing can hold it up.

        That is the common case (an open socket whose client keeps up), and it costs a fraction of a writer
        task's ``send``. A socket that is closing, or whose transport has stopped accepting writes (a client
        that does not read), goes through the writer task, which waits for it and counts toward overflow.
        """
        connection = self.connection
        if (len(self.outbox) != 1 or connection.paused or connection.protocol.state is not OPEN
                or connection.send_in_progress is not None):
            return False
        frame, push = self.outbox.take()  # type: ignore[misc]
        broadcast((connection,), frame)
        telemetry.pushed(push)
        return True

    async def _drain(self) -> None:
        push = None
        try:
            while (queued := self.outbox.take()) is not None:
                frame, push = queued
                await self.connection.send(frame)
                telemetry.pushed(push)
                push = None
        except ConnectionClosed:
            telemetry.push_abandoned(push, "socket closed")
            self._closing = True
        finally:
            self._writer = None

    def stop(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        while (queued := self.outbox.take()) is not None:
            telemetry.push_abandoned(queued[1], "socket closed")


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
        limits: SocketLimits = SocketLimits(),
    ) -> None:
        self.notifier = notifier
        self.notify_tokens = notify_tokens
        self.max_subscriptions = max_subscriptions
        self.send_queue_limit = send_queue_limit
        self.heartbeat_seconds = heartbeat_seconds
        self.per_message_deflate = per_message_deflate
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.limits = limits
        self.sessions: set[SocketSession] = set()
        self._admitted: dict[ServerConnection, str] = {}  # sockets past the handshake → client address
        self._per_client: Counter[str] = Counter()
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
        return BoundedServerConnection(protocol, self, ping_interval=self.heartbeat_seconds,  # type: ignore[arg-type]
                                ping_timeout=self.heartbeat_seconds, close_timeout=self.close_timeout,
                                max_queue=MAX_QUEUED_FRAMES)

    async def handler(self, connection: ServerConnection) -> None:
        try:
            async with asyncio.timeout(self.open_timeout):
                await connection.handshake(self._check_handshake, None, None)
            if connection.protocol.state is not OPEN:
                connection.transport.abort()
                return
            connection.start_keepalive()
            telemetry.connection_opened()
            try:
                async with connection:
                    await self._serve(connection)
            finally:
                telemetry.connection_closed()
        except Exception:  # noqa: BLE001 - never leak a socket, whatever failed
            log.exception("socket handler failed")
            connection.transport.abort()
        finally:
            self._release(connection)
            self.handler_tasks.discard(asyncio.current_task())  # type: ignore[arg-type]

    def _client_of(self, connection: ServerConnection, request: Request) -> str:
        header = self.limits.client_address_header
        if header and (value := request.headers.get(header)):
            return value.split(",")[0].strip()[:64]
        peer = connection.remote_address
        return str(peer[0]) if peer else "unknown"

    def _release(self, connection: ServerConnection) -> None:
        client = self._admitted.pop(connection, None)
        if client is not None:
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

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
        if len(self._admitted) >= self.limits.max_connections:
            log.warning("handshake refused: the instance is at its connection limit",
                        extra={"correlationId": correlation_id, "limit": self.limits.max_connections})
            return _retry_later(connection.respond(
                503, "this instance is at its connection limit: reconnect in a few seconds\n"))
        client = self._client_of(connection, request)
        if self._per_client[client] >= self.limits.max_connections_per_client:
            log.info("handshake refused: too many sockets from one client",
                     extra={"correlationId": correlation_id, "limit": self.limits.max_connections_per_client})
            return _retry_later(connection.respond(
                429, "too many open sockets from this client: close some (one socket can follow many orders)\n"))
        try:
            self.notify_tokens.verify(token, correlation_id)
        except InvalidNotifyToken as exc:
            status = 401 if exc.malformed else 403
            log.info("handshake refused", extra={"correlationId": correlation_id, "httpStatus": status,
                                                "reason": str(exc)})
            return connection.respond(status, f"{exc}\n")
        self._admitted[connection] = client
        self._per_client[client] += 1
        return None

    async def _serve(self, connection: ServerConnection) -> None:
        correlation_id = parse_qs(urlsplit(connection.request.path).query)["correlationId"][0]  # type: ignore[union-attr]
        session = SocketSession(connection, self)
        self.sessions.add(session)
        try:
            session.subscribe(self.notifier, correlation_id)
            idle_since: float | None = None
            window_start, frames_in_window = time.monotonic(), 0
            while True:
                # A socket that follows nothing is closed after a while, however many frames it sends.
                if session.subscriptions:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                remaining = None if idle_since is None else idle_since + self.limits.idle_seconds - time.monotonic()
                try:
                    async with asyncio.timeout(remaining):
                        message = await connection.recv()
                except TimeoutError:
                    await connection.close(CLOSE_IDLE, f"following no order for {self.limits.idle_seconds:.0f}s")
                    break
                # A client sends a handful of commands; a flood of frames only costs this instance CPU.
                now = time.monotonic()
                if now - window_start >= FRAME_WINDOW_SECONDS:
                    window_start, frames_in_window = now, 0
                frames_in_window += 1
                if frames_in_window > self.limits.max_frames_per_window:
                    log.info("socket closed: too many frames", extra={"correlationId": correlation_id})
                    await connection.close(CLOSE_POLICY, f"more than {self.limits.max_frames_per_window} frames "
                                                         f"in {FRAME_WINDOW_SECONDS:.0f}s")
                    break
                try:
                    command = parse_client_frame(message)
                    if isinstance(command, Subscribe):
                        try:
                            self.notify_tokens.verify(command.token, command.correlation_id)
                        except InvalidNotifyToken as exc:
                            raise FrameError(f"subscription refused: {exc}") from None
                        session.subscribe(self.notifier, command.correlation_id)
                    else:
                        await self.notifier.unsubscribe(session, command.correlation_id)
                except FrameError as exc:
                    session.send_error(str(exc))
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)
            session.stop()
            await session.stop_subscribing()
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


def _retry_later(response: Response) -> Response:
    response.headers["Retry-After"] = "5"
    return response


ProtocolFactory = Callable[..., ServerConnection]
