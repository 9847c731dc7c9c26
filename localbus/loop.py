"""A lean single-threaded I/O loop that drives Proton's AMQP engine.

Proton's own pure-Python ``Container`` wraps every engine event in several Python objects and dispatches it
through two handler chains; at broker message rates that costs more CPU than the SDK clients use. This loop
keeps the same model (one thread owns every connection, the store and all engine objects) but reads the
engine's events directly and hands only the ones the broker needs to its handler.

Other threads reach the loop only through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

import cproton
from proton import Collector, Connection, Delivery, Link, Session, Transport

from .transfer_numbering import TransferNumbering

log = logging.getLogger("localbus.loop")

_lib = cproton.lib
_isnull = cproton.isnull


class Event:
    """The engine objects one event is about, wrapped lazily."""

    __slots__ = ("_impl",)

    def __init__(self, impl) -> None:
        self._impl = impl

    @property
    def connection(self):
        return Connection.wrap(_lib.pn_event_connection(self._impl))

    @property
    def session(self):
        return Session.wrap(_lib.pn_event_session(self._impl))

    @property
    def link(self):
        return Link.wrap(_lib.pn_event_link(self._impl))

    @property
    def delivery(self):
        return Delivery.wrap(_lib.pn_event_delivery(self._impl))

    @property
    def transport(self):
        return Transport.wrap(_lib.pn_event_transport(self._impl))


_DISPATCH = {
    _lib.PN_CONNECTION_REMOTE_OPEN: "on_connection_remote_open",
    _lib.PN_CONNECTION_REMOTE_CLOSE: "on_connection_remote_close",
    _lib.PN_SESSION_REMOTE_OPEN: "on_session_remote_open",
    _lib.PN_SESSION_REMOTE_CLOSE: "on_session_remote_close",
    _lib.PN_LINK_REMOTE_OPEN: "on_link_remote_open",
    _lib.PN_LINK_REMOTE_CLOSE: "on_link_remote_close",
    _lib.PN_LINK_REMOTE_DETACH: "on_link_remote_close",
    _lib.PN_LINK_FLOW: "on_link_flow",
    _lib.PN_DELIVERY: "on_delivery",
    _lib.PN_TRANSPORT_ERROR: "on_transport_error",
    _lib.PN_TRANSPORT_TAIL_CLOSED: "on_transport_tail_closed",
    _lib.PN_TRANSPORT_CLOSED: "on_transport_closed",
}
_PN_TRANSPORT = _lib.PN_TRANSPORT
_PN_TRANSPORT_CLOSED = _lib.PN_TRANSPORT_CLOSED


class _Conn:
    __slots__ = ("sock", "transport", "connection", "fd", "writing", "closed", "peer", "numbering", "backlog", "outbuf")

    def __init__(self, sock: socket.socket, transport: Transport, connection: Connection, peer: str) -> None:
        self.sock = sock
        self.transport = transport
        self.connection = connection
        self.fd = sock.fileno()
        self.writing = False
        self.closed = False
        self.peer = peer
        self.numbering = TransferNumbering(peer)
        self.backlog = b""  # input Proton had no room for yet
        self.outbuf = b""  # output taken from Proton, not yet written to the socket


class EventLoop:
    """Accepts AMQP connections on ``host:port`` and feeds their engine events to ``handler``.

    The handler provides ``on_*`` methods named after the events above, plus ``flush()`` (called once per
    loop turn, after all events of the turn: the place for group commit) and ``tick()`` (timers).
    """

    def __init__(self, handler: Any, host: str, port: int, *, tick_seconds: float = 0.05) -> None:
        self.handler = handler
        self.tick_seconds = tick_seconds
        self.collector = Collector()
        self.selector = selectors.DefaultSelector()
        self.listener = socket.create_server((host, port), backlog=1024)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._calls: deque[tuple[Callable[[], Any], Future]] = deque()
        self._conns: dict[int, _Conn] = {}
        self._by_transport: dict[int, _Conn] = {}
        self._to_write: set[_Conn] = set()
        self._backlogged: set[_Conn] = set()  # connections with input Proton had no room for
        self._running = True
        self._next_tick = 0.0
        self._next_engine_tick = 0.0

    # ----- cross-thread -------------------------------------------------------------------------
    def call_soon_threadsafe(self, fn: Callable[[], Any]) -> Future:
        fut: Future = Future()
        self._calls.append((fn, fut))
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass
        return fut

    def stop(self) -> None:
        """Loop thread only: end ``run`` after this turn."""
        self._running = False

    # ----- main loop ----------------------------------------------------------------------------
    def run(self) -> None:
        selector = self.selector
        try:
            while self._running:
                now = time.monotonic()
                timeout = max(0.0, min(self._next_tick - now, 0.5))
                for key, mask in selector.select(timeout):
                    data = key.data
                    if data == "accept":
                        self._accept()
                    elif data == "wake":
                        self._wake()
                    else:
                        if mask & selectors.EVENT_READ:
                            try:
                                self._read(data)
                            except Exception:  # noqa: BLE001
                                log.exception("read failed; dropping the connection",
                                              extra={"event": "connection-error", "peer": data.peer})
                                self._close(data)
                        if mask & selectors.EVENT_WRITE:
                            self._to_write.add(data)
                now = time.monotonic()
                if now >= self._next_tick:
                    self._next_tick = now + self.tick_seconds
                    self._guard(self.handler.tick)
                    if now >= self._next_engine_tick:
                        self._next_engine_tick = now + 1.0
                        for conn in list(self._conns.values()):
                            conn.transport.tick(now)
                            self._to_write.add(conn)
                self._dispatch()
                self._guard(self.handler.flush)
                self._dispatch()
                self._push_backlogs()
                self._write_all()
        finally:
            self._close_all()

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - one failure must not stop the broker
            log.exception("error in %s", getattr(fn, "__name__", fn), extra={"event": "handler-error"})

    def _wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._calls:
            fn, fut = self._calls.popleft()
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

    # ----- connections --------------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    log.error("out of file descriptors; connection refused", extra={"event": "accept-failed"})
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = Transport(Transport.SERVER)
            transport.idle_timeout = 0
            sasl = transport.sasl()
            sasl.allowed_mechs("ANONYMOUS")
            connection = Connection()
            connection.peer = f"{addr[0]}:{addr[1]}"
            connection.collect(self.collector)
            transport.bind(connection)
            conn = _Conn(sock, transport, connection, f"{addr[0]}:{addr[1]}")
            connection.numbering = conn.numbering
            self._conns[conn.fd] = conn
            self._by_transport[self._key(transport._impl)] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)
            self._to_write.add(conn)

    @staticmethod
    def _key(impl) -> int:
        return int(cproton.ffi.cast("uintptr_t", impl))

    def _read(self, conn: _Conn) -> None:
        transport = conn.transport
        for _ in range(16):
            capacity = transport.capacity()
            if capacity < 0:
                return
            if capacity == 0:
                return
            if conn.backlog:
                self._push(conn)
                if conn.backlog:
                    return
                capacity = transport.capacity()
                if capacity <= 0:
                    return
            # Proton takes at most ``capacity`` bytes (it grows its buffer as a large frame arrives). What the
            # numbering hands over can be a little more (a held frame start, a renumbered id): the rest waits
            # in the backlog for the next turn.
            wanted = min(max(capacity - conn.numbering.held, 1), 262144)
            try:
                data = conn.sock.recv(wanted)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                transport.close_tail()
                self._to_write.add(conn)
                return
            received = len(data)
            conn.backlog = conn.numbering.inbound(data)
            if conn.backlog:
                self._push(conn)
            self._to_write.add(conn)
            if received < wanted:
                return

    def _push(self, conn: _Conn) -> None:
        """Hand Proton as much of the connection's pending input as it has room for; what does not fit is
        tried again at the end of every loop turn."""
        data = conn.backlog
        room = conn.transport.capacity()
        if room > 0:
            conn.transport.push(data[:room])
            conn.backlog = data = data[room:]
        if data:
            self._backlogged.add(conn)
        else:
            self._backlogged.discard(conn)

    def _push_backlogs(self) -> None:
        for conn in list(self._backlogged):
            if conn.closed:
                self._backlogged.discard(conn)
                continue
            self._push(conn)
            self._to_write.add(conn)

    def _write_all(self) -> None:
        if not self._to_write:
            return
        conns, self._to_write = self._to_write, set()
        for conn in conns:
            if conn.closed:
                continue
            try:
                self._write(conn)
            except Exception:  # noqa: BLE001 - drop this connection, keep serving the others
                log.exception("connection failed; dropping it", extra={"event": "connection-error", "peer": conn.peer})
                self._close(conn)

    def _write(self, conn: _Conn) -> None:
        transport = conn.transport
        while True:
            if not conn.outbuf:
                pending = transport.pending()
                if pending <= 0:
                    break
                # Taken from Proton at once: dispositions may be rewritten on the way (transfer_numbering).
                conn.outbuf = conn.numbering.outbound(transport.peek(pending))
                transport.pop(pending)
                if not conn.outbuf:
                    continue
            out = conn.outbuf
            try:
                sent = conn.sock.send(out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                conn.outbuf = b""
                transport.close_head()
                transport.close_tail()
                break
            conn.outbuf = out[sent:]
            if conn.outbuf:
                if not conn.writing:
                    conn.writing = True
                    self.selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
                break
        if conn.writing and not conn.outbuf and transport.pending() <= 0:
            conn.writing = False
            self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
        if transport.closed and not conn.outbuf:
            self._dispatch()  # deliver TRANSPORT_CLOSED before the engine objects go away
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._conns.pop(conn.fd, None)
        self._by_transport.pop(self._key(conn.transport._impl), None)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        try:
            conn.transport.unbind()
        except Exception:  # noqa: BLE001
            pass

    def _close_all(self) -> None:
        for conn in list(self._conns.values()):
            try:
                self._write(conn)
            except Exception:  # noqa: BLE001
                pass
            self._close(conn)
        for sock in (self.listener, self._wake_r, self._wake_w):
            try:
                self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self.selector.close()

    def close_listener(self) -> None:
        try:
            self.selector.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        self.listener.close()

    def connections(self) -> list[Connection]:
        return [c.connection for c in self._conns.values()]

    def flush_output(self) -> None:
        """Loop thread: write whatever every transport has pending (used while shutting down)."""
        self._dispatch()
        for conn in list(self._conns.values()):
            self._write(conn)

    # ----- events -------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        collector = self.collector._impl
        handler = self.handler
        while True:
            impl = _lib.pn_collector_peek(collector)
            if impl == cproton.ffi.NULL:
                return
            etype = _lib.pn_event_type(impl)
            if etype == _PN_TRANSPORT:
                conn = self._by_transport.get(self._key(_lib.pn_event_transport(impl)))
                if conn is not None:
                    self._to_write.add(conn)
            else:
                name = _DISPATCH.get(etype)
                if name is not None:
                    try:
                        getattr(handler, name)(Event(impl))
                    except Exception:  # noqa: BLE001
                        log.exception("error while handling %s", name, extra={"event": "handler-error"})
                    if etype == _PN_TRANSPORT_CLOSED:
                        conn = self._by_transport.get(self._key(_lib.pn_event_transport(impl)))
                        if conn is not None:
                            self._to_write.add(conn)
            _lib.pn_collector_pop(collector)
