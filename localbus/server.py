"""The AMQP 1.0 side of the broker: Service Bus' dialect over the queue semantics in ``store``.

One loop thread (``loop.EventLoop``) owns every connection and the store. Work done while handling one turn's
events is committed to the journal once at the end of the turn (group commit); only then are sends
acknowledged, and receivers of entities that gained messages are served. Other threads reach the loop only
through ``EventLoop.call_soon_threadsafe``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import time
import uuid
from typing import Callable
from urllib.parse import quote_plus, unquote_plus, urlparse

from proton import (
    Condition,
    Delivery,
    Endpoint,
    Link,
    Message,
    symbol,
    timestamp,
)
from proton import Handler
import cproton

from . import codec
from .loop import EventLoop
from .config import BrokerConfig
from .store import (
    Consumer,
    InvalidRequest,
    Outcome,
    SessionCannotBeLocked,
    Store,
    StoreError,
    StoredMessage,
)

log = logging.getLogger("localbus.amqp")

VENDOR = "com.microsoft:"
SESSION_FILTER = symbol(VENDOR + "session-filter")
LOCKED_UNTIL_UTC = symbol(VENDOR + "locked-until-utc")
TIMEOUT_PROP = symbol(VENDOR + "timeout")
DEAD_LETTER_CONDITION = VENDOR + "dead-letter"
DOTNET_EPOCH_TICKS = 621355968000000000
SEND_CREDIT = 1000
TICK_SECONDS = 0.05
LAZY_COMMIT_SECONDS = 0.1
DEFAULT_SESSION_WAIT = 65.0


def delivery_tag(dlv) -> bytes:
    """The raw tag bytes (proton-python would decode them as UTF-8 text)."""
    raw = cproton.lib.pn_delivery_tag(dlv._impl)
    return bytes(cproton.ffi.unpack(raw.start, raw.size))


def _guarded(method):
    """A failure while handling one event is logged; it never stops the reactor."""

    @functools.wraps(method)
    def wrapper(self, event):
        try:
            return method(self, event)
        except Exception:  # noqa: BLE001
            log.exception("error while handling %s", method.__name__, extra={"event": "handler-error"})
            try:
                conn = event.connection
                if conn is not None and method.__name__ != "on_transport_closed":
                    conn.condition = Condition("amqp:internal-error", "The broker failed to handle a request on this connection.")
                    conn.close()
            except Exception:  # noqa: BLE001
                pass

    return wrapper


def condition(name: str, description: str | None) -> Condition:
    # The SDK indexes the error's info field, so it must be present (a null would be trimmed away).
    return Condition(name, description, {symbol(VENDOR + "tracking-id"): str(uuid.uuid4())})


def dotnet_ticks(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000) * 10000 + DOTNET_EPOCH_TICKS


def entity_path(address: str | None) -> str:
    """``amqps://host:port/orders`` or ``/orders`` or ``orders`` → ``orders``."""
    if not address:
        return ""
    if "://" in address:
        address = urlparse(address).path
    return address.strip("/")


class AuthError(Exception):
    pass


def verify_sas(token: str, key_name: str, key: str, now: float) -> str:
    """Check a SharedAccessSignature; return the resource path (``sr``) it grants."""
    prefix = "SharedAccessSignature "
    if not token.startswith(prefix):
        raise AuthError("The token is not a SharedAccessSignature; connect with a connection string that has SharedAccessKeyName and SharedAccessKey.")
    fields = {}
    for part in token[len(prefix):].split("&"):
        name, _, value = part.partition("=")
        fields[name] = unquote_plus(value)
    missing = {"sr", "sig", "se", "skn"} - set(fields)
    if missing:
        raise AuthError(f"The SharedAccessSignature lacks {sorted(missing)}.")
    if fields["skn"] != key_name:
        raise AuthError(f"Unknown SharedAccessKeyName '{fields['skn']}': use the key name from the broker's config.")
    try:
        expiry = int(fields["se"])
    except ValueError:
        raise AuthError("The SharedAccessSignature has a non-numeric expiry (se).") from None
    if expiry < now:
        raise AuthError("The SharedAccessSignature has expired; request a new token.")
    to_sign = f"{quote_plus(fields['sr'])}\n{expiry}".encode()
    expected = base64.b64encode(hmac.new(key.encode(), to_sign, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, fields["sig"]):
        raise AuthError("The SharedAccessSignature does not match: the SharedAccessKey is wrong for this broker.")
    return entity_path(fields["sr"]).lower()


class ConnCtx:
    """What the broker knows about one client connection."""

    __slots__ = ("authorized", "reply_links", "links", "peer", "closed")

    def __init__(self, peer: str) -> None:
        self.authorized: set[str] = set()
        self.reply_links: dict[str, Link] = {}
        self.links: set[Link] = set()
        self.peer = peer
        self.closed = False


class LinkCtx:
    __slots__ = ("kind", "path", "consumer", "pending_session", "deadline", "conn", "requested_session",
                 "receive_and_delete", "mgmt_consumer")

    def __init__(self, kind: str, path: str, conn: ConnCtx) -> None:
        self.kind = kind  # send | consume | cbs | cbs-reply | mgmt | mgmt-reply
        self.path = path
        self.consumer: Consumer | None = None
        self.pending_session = False
        self.deadline = 0.0
        self.conn = conn
        self.requested_session: str | None = None
        self.receive_and_delete = False


class AmqpHandler(Handler):
    """Serves every connection; runs on the event loop's thread."""

    def __init__(self, store: Store, config: BrokerConfig) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.loop: EventLoop | None = None
        self.after_commit: list[Callable[[], None]] = []
        self.last_commit = 0.0
        self.consumers: dict[Consumer, Link] = {}
        self.waiting_sessions: list[Link] = []
        self.connections: set = set()
        self.stopping = False
        self.parsed_cache: dict[tuple[str, int], codec.Parsed] = {}

    # ----- loop lifecycle -----------------------------------------------------------------------
    def tick(self) -> None:
        if self.stopping:
            return
        now = time.time()
        self.store.tick(now)
        self._expire_session_waits(now)
        self._commit(force=False)

    def flush(self) -> None:
        self._flush()

    def _commit(self, force: bool) -> None:
        """Commit the journal: now if ``force``, else at most every LAZY_COMMIT_SECONDS."""
        journal = self.store.journal
        if not journal.pending():
            return
        now = time.monotonic()
        if not force and now - self.last_commit < LAZY_COMMIT_SECONDS:
            return
        try:
            journal.commit()
        except Exception:
            log.exception("journal commit failed; unacknowledged sends are not acknowledged",
                          extra={"event": "commit-failed"})
            raise
        self.last_commit = now

    def _flush(self) -> None:
        """Group commit, then everything that had to wait for it.

        Sends, dead-letters, deferrals, abandons and management requests are answered only after their
        commit. Completions are echoed at once and committed lazily (within LAZY_COMMIT_SECONDS): losing the
        last completions in a crash means a redelivery, which at-least-once delivery allows anyway.
        """
        store = self.store
        if self.after_commit:
            self._commit(force=True)
            actions, self.after_commit = self.after_commit, []
            for action in actions:
                action()
        else:
            self._commit(force=False)
        if store.lost_sessions:
            lost, store.lost_sessions = store.lost_sessions, []
            for consumer, session in lost:
                link = self.consumers.pop(consumer, None)
                if link is not None:
                    log.info("session lock expired", extra={"event": "session-lock-lost", "session": session.id, "queue": consumer.entity.path})
                    self._close_link(link, VENDOR + "session-lock-lost",
                                     f"The session lock of '{session.id}' expired. Accept the session again to continue.")
        if store.dirty:
            dirty, store.dirty = store.dirty, set()
            now = time.time()
            for entity in dirty:
                if entity.sessionful:
                    self._serve_session_waits(entity, now)
                # Rotate so competing consumers share the work.
                consumers = entity.consumers
                if len(consumers) > 1:
                    consumers.append(consumers.pop(0))
                for consumer in list(consumers):
                    link = self.consumers.get(consumer)
                    if link is not None:
                        self._pump(link, consumer, now)
            self._commit(force=False)

    def shutdown(self) -> None:
        """Loop thread: stop accepting, close every connection, commit, end the loop."""
        self.stopping = True
        self.loop.close_listener()
        for conn in list(self.connections):
            try:
                conn.condition = Condition("amqp:connection:forced", "The broker is shutting down.")
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._flush()
        self._commit(force=True)
        self.loop.flush_output()
        self.loop.stop()

    # ----- connections --------------------------------------------------------------------------
    @_guarded
    def on_connection_remote_open(self, event) -> None:
        conn = event.connection
        conn.ctx = ConnCtx(str(getattr(conn, "peer", "")))
        self.connections.add(conn)
        conn.container = "localbus"
        conn.open()

    @_guarded
    def on_session_remote_open(self, event) -> None:
        event.session.open()

    @_guarded
    def on_session_remote_close(self, event) -> None:
        event.session.close()

    @_guarded
    def on_connection_remote_close(self, event) -> None:
        self._drop_connection(event.connection)
        event.connection.close()

    @_guarded
    def on_transport_closed(self, event) -> None:
        conn = event.connection
        if conn is not None:
            self._drop_connection(conn)

    @_guarded
    def on_transport_tail_closed(self, event) -> None:
        # The peer stopped sending (EOF or a crash): nothing more can happen on this connection.
        conn = event.connection
        if conn is not None:
            self._drop_connection(conn)
        event.transport.close_head()

    @_guarded
    def on_transport_error(self, event) -> None:
        transport = event.transport
        cond = transport.condition
        conn = event.connection
        peer = getattr(conn, "peer", None) if conn is not None else None
        name = cond.name if cond is not None else None
        description = cond.description if cond is not None else None
        if name in ("amqp:connection:framing-error", "amqp:decode-error", "amqp:not-allowed"):
            log.warning("malformed input; connection dropped",
                        extra={"event": "malformed-input", "peer": peer, "condition": name, "description": description})
        else:
            log.info("connection ended", extra={"event": "connection-ended", "peer": peer, "condition": name,
                                                "description": description})

    def _drop_connection(self, conn) -> None:
        ctx: ConnCtx | None = getattr(conn, "ctx", None)
        self.connections.discard(conn)
        if ctx is None or ctx.closed:
            return
        ctx.closed = True
        now = time.time()
        for link in list(ctx.links):
            self._forget_link(link, now)
        ctx.links.clear()
        ctx.reply_links.clear()

    def _forget_link(self, link, now: float) -> None:
        lctx: LinkCtx | None = getattr(link, "lctx", None)
        if lctx is None:
            return
        if lctx.consumer is not None:
            self.consumers.pop(lctx.consumer, None)
            self.store.detach(lctx.consumer, now)
            lctx.consumer = None
        if lctx.pending_session and link in self.waiting_sessions:
            self.waiting_sessions.remove(link)
        lctx.pending_session = False
        lctx.conn.links.discard(link)

    # ----- links --------------------------------------------------------------------------------
    @_guarded
    def on_link_remote_open(self, event) -> None:
        link = event.link
        conn_ctx: ConnCtx = event.connection.ctx
        now = time.time()
        try:
            if link.is_receiver:
                self._open_incoming(link, conn_ctx)
            else:
                self._open_outgoing(link, conn_ctx, now)
        except StoreError as exc:
            self._refuse_link(link, exc.condition, exc.description)
        except AuthError as exc:
            self._refuse_link(link, "amqp:unauthorized-access", str(exc))

    def _refuse_link(self, link, cond_name: str, description: str) -> None:
        log.info("link refused", extra={"event": "link-refused", "condition": cond_name, "description": description,
                                       "address": (link.remote_target.address if link.is_receiver else link.remote_source.address)})
        # A refused attach carries a null terminus, so the client never sees the link as usable.
        from proton import Terminus
        if link.is_receiver:
            link.source.copy(link.remote_source)
            link.target.type = Terminus.UNSPECIFIED
        else:
            link.target.copy(link.remote_target)
            link.source.type = Terminus.UNSPECIFIED
        link.open()
        self._close_link(link, cond_name, description)

    def _close_link(self, link, cond_name: str | None, description: str | None) -> None:
        if cond_name is not None:
            link.condition = condition(cond_name, description)
        lctx: LinkCtx | None = getattr(link, "lctx", None)
        if lctx is not None:
            self._forget_link(link, time.time())
        link.close()

    def _authorize(self, conn_ctx: ConnCtx, path: str) -> None:
        entity = path.lower().split("/$")[0]
        for granted in conn_ctx.authorized:
            granted = granted.split("/$")[0]
            if granted == "" or entity == granted or entity.startswith(granted + "/"):
                return
        raise AuthError(
            f"Unauthorized access to '{path}': no valid token was put on $cbs for it. Check the connection string's "
            "SharedAccessKeyName and SharedAccessKey."
        )

    def _open_incoming(self, link, conn_ctx: ConnCtx) -> None:
        """The client sends to us: a queue, $cbs, or a management node."""
        address = link.remote_target.address
        path = entity_path(address)
        link.target.copy(link.remote_target)
        link.source.copy(link.remote_source)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if path.lower() == "$cbs":
            lctx = LinkCtx("cbs", path, conn_ctx)
        elif path.lower().endswith("/$management"):
            node = path[: -len("/$management")]
            self._authorize(conn_ctx, node)
            self.store.entity(node)
            lctx = LinkCtx("mgmt", node, conn_ctx)
        else:
            self._authorize(conn_ctx, path)
            entity = self.store.entity(path)
            if entity.dead_letter:
                raise InvalidRequest(f"Cannot send to '{entity.path}': send to '{entity.config.name}' instead.")
            lctx = LinkCtx("send", entity.config.name, conn_ctx)
            link.max_message_size = entity.config.max_message_size_bytes
        link.lctx = lctx
        conn_ctx.links.add(link)
        link.open()
        link.flow(SEND_CREDIT if lctx.kind == "send" else 100)

    def _open_outgoing(self, link, conn_ctx: ConnCtx, now: float) -> None:
        """The client receives from us: a queue (or its DLQ, or a session), or replies of $cbs/$management."""
        address = link.remote_source.address
        path = entity_path(address)
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if path.lower() == "$cbs":
            link.lctx = LinkCtx("cbs-reply", path, conn_ctx)
            conn_ctx.reply_links["$cbs"] = link
            conn_ctx.links.add(link)
            link.open()
            return
        if path.lower().endswith("/$management"):
            node = path[: -len("/$management")]
            self._authorize(conn_ctx, node)
            self.store.entity(node)
            link.lctx = LinkCtx("mgmt-reply", node, conn_ctx)
            conn_ctx.reply_links[path.lower()] = link
            target = entity_path(link.remote_target.address).lower()
            if target:
                conn_ctx.reply_links[target] = link
            conn_ctx.links.add(link)
            link.open()
            return
        self._authorize(conn_ctx, path)
        entity = self.store.entity(path)
        receive_and_delete = link.remote_snd_settle_mode == Link.SND_SETTLED
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        lctx = LinkCtx("consume", entity.path, conn_ctx)
        lctx.receive_and_delete = receive_and_delete
        link.lctx = lctx
        conn_ctx.links.add(link)
        filters = self._filters(link)
        if entity.sessionful or SESSION_FILTER in filters:
            if not entity.sessionful:
                raise InvalidRequest(f"The queue '{entity.path}' does not require sessions: receive without session_id.")
            requested = filters.get(SESSION_FILTER)
            lctx.requested_session = None if requested is None else str(requested)
            timeout_ms = (link.remote_properties or {}).get(TIMEOUT_PROP)
            wait = DEFAULT_SESSION_WAIT if timeout_ms is None else max(0.0, int(timeout_ms) / 1000.0)
            lctx.deadline = now + wait
            if not self._try_session(link, lctx, now):
                lctx.pending_session = True
                self.waiting_sessions.append(link)
            return
        consumer = self.store.attach(entity.path, receive_and_delete=receive_and_delete, name=link.name)
        lctx.consumer = consumer
        self.consumers[consumer] = link
        link.open()

    @staticmethod
    def _filters(link) -> dict:
        data = link.remote_source.filter
        if data is None:
            return {}
        data.rewind()
        if not data.next():
            return {}
        value = data.get_object()
        if not isinstance(value, dict):
            return {}
        out = {}
        for k, v in value.items():
            if hasattr(v, "value") and hasattr(v, "descriptor"):
                v = v.value
            out[symbol(str(k))] = v
        return out

    def _try_session(self, link, lctx: LinkCtx, now: float) -> bool:
        """Lock the requested (or next free) session for ``link``; open the link when done."""
        try:
            consumer = self.store.accept_session(lctx.path, lctx.requested_session, now,
                                                 receive_and_delete=lctx.receive_and_delete, name=link.name)
        except SessionCannotBeLocked as exc:
            lctx.pending_session = False
            link.open()
            self._close_link(link, exc.condition, exc.description)
            return True
        if consumer is None:
            return False
        session = consumer.session
        lctx.consumer = consumer
        lctx.pending_session = False
        self.consumers[consumer] = link
        src = link.source
        src.copy(link.remote_source)
        f = src.filter
        f.clear()
        f.put_map()
        f.enter()
        f.put_symbol(SESSION_FILTER)
        f.put_string(session.id)
        f.exit()
        link.properties = {LOCKED_UNTIL_UTC: dotnet_ticks(session.locked_until)}
        link.open()
        log.debug("session locked", extra={"event": "session-locked", "session": session.id, "queue": lctx.path})
        self._pump(link, consumer, now)
        return True

    def _serve_session_waits(self, entity, now: float) -> None:
        for link in list(self.waiting_sessions):
            lctx: LinkCtx = link.lctx
            if lctx.path.lower() != entity.path.lower():
                continue
            if self._try_session(link, lctx, now):
                if link in self.waiting_sessions:
                    self.waiting_sessions.remove(link)

    def _expire_session_waits(self, now: float) -> None:
        for link in list(self.waiting_sessions):
            lctx: LinkCtx = link.lctx
            if lctx.deadline <= now:
                self.waiting_sessions.remove(link)
                lctx.pending_session = False
                link.open()
                self._close_link(link, VENDOR + "timeout",
                                 "No session became available within the wait time. Retry later or raise max_wait_time.")

    @_guarded
    def on_link_remote_close(self, event) -> None:
        link = event.link
        self._forget_link(link, time.time())
        conn_ctx = getattr(event.connection, "ctx", None)
        if conn_ctx is not None:
            for key, value in list(conn_ctx.reply_links.items()):
                if value is link:
                    del conn_ctx.reply_links[key]
        if link.state & Endpoint.LOCAL_ACTIVE or link.state & Endpoint.LOCAL_UNINIT:
            link.close()

    @_guarded
    def on_link_flow(self, event) -> None:
        link = event.link
        if not link.is_sender:
            return
        lctx: LinkCtx | None = getattr(link, "lctx", None)
        if lctx is None or lctx.consumer is None:
            if link.drain_mode:
                link.drained()
            return
        self._pump(link, lctx.consumer, time.time())

    # ----- delivering to consumers --------------------------------------------------------------
    def _pump(self, link, consumer: Consumer, now: float) -> None:
        store = self.store
        credit = link.credit
        while credit > 0 and store.has_ready(consumer):
            m = store.next_message(consumer, now)
            if m is None:
                break
            self._deliver(link, consumer, m)
            credit -= 1
        if link.drain_mode:
            link.drained()

    def _parsed(self, m: StoredMessage) -> codec.Parsed:
        key = (m.queue, m.seq)
        parsed = self.parsed_cache.get(key)
        if parsed is None:
            parsed = codec.parse_stored(m.payload)
            if len(self.parsed_cache) > 20000:
                self.parsed_cache.clear()
            self.parsed_cache[key] = parsed
        return parsed

    def _encode(self, m: StoredMessage, locked_until: float | None) -> bytes:
        dead_letter = (m.dead_letter_reason, m.dead_letter_description) if m.dead_lettered else None
        return codec.encode_delivery(
            self._parsed(m), seq=m.seq, enqueued_at=m.enqueued_at, delivery_count=m.delivery_count,
            locked_until=locked_until, lock_token=None,
            dead_letter_source=m.dead_letter_source if m.dead_lettered else None,
            message_state=int(m.state), scheduled_at=m.scheduled_at, dead_letter=dead_letter,
        )

    def _deliver(self, link, consumer: Consumer, m: StoredMessage) -> None:
        if consumer.receive_and_delete:
            body = self._encode(m, None)
            self.parsed_cache.pop((m.queue, m.seq), None)
            dlv = link.delivery(uuid.uuid4().bytes)
            link.send(body)
            dlv.settle()
        else:
            locked_until = None if consumer.session is not None else m.locked_until
            body = self._encode(m, locked_until)
            link.delivery(m.lock_token)
            link.send(body)
        link.advance()

    # ----- deliveries ---------------------------------------------------------------------------
    @_guarded
    def on_delivery(self, event) -> None:
        dlv = event.delivery
        link = event.link
        lctx: LinkCtx | None = getattr(link, "lctx", None)
        if link.is_receiver:
            if dlv.partial:
                return
            if dlv.aborted:
                dlv.settle()
                return
            data = link.recv(dlv.pending)
            link.advance()
            if lctx is None:
                dlv.update(Delivery.REJECTED)
                dlv.settle()
                return
            if lctx.kind == "send":
                self._on_send(link, dlv, lctx, data)
            elif lctx.kind == "cbs":
                self._on_cbs(link, dlv, lctx, data)
            elif lctx.kind == "mgmt":
                self._on_mgmt(link, dlv, lctx, data)
            if link.credit < SEND_CREDIT // 2:
                link.flow(SEND_CREDIT - link.credit)
        else:
            if dlv.updated:
                self._on_settlement(link, dlv, lctx)

    def _on_send(self, link, dlv, lctx: LinkCtx, data: bytes) -> None:
        now = time.time()
        try:
            incoming = [codec.read_incoming(part) for part in codec.split_batch(data)]
            self.store.enqueue(lctx.path, incoming, now)
        except codec.MalformedMessage as exc:
            log.warning("malformed message refused", extra={"event": "malformed-message", "queue": lctx.path, "description": str(exc)})
            self._reject(dlv, "amqp:decode-error", f"The message could not be decoded: {exc}")
            return
        except StoreError as exc:
            log.info("send refused", extra={"event": "send-refused", "queue": lctx.path, "condition": exc.condition, "description": exc.description})
            self._reject(dlv, exc.condition, exc.description)
            return
        if dlv.settled:
            dlv.settle()
            return
        self.after_commit.append(lambda: self._accept(dlv))

    @staticmethod
    def _accept(dlv) -> None:
        dlv.update(Delivery.ACCEPTED)
        dlv.settle()

    @staticmethod
    def _reject(dlv, cond_name: str, description: str) -> None:
        dlv.local.condition = condition(cond_name, description)
        dlv.update(Delivery.REJECTED)
        dlv.settle()

    def _on_settlement(self, link, dlv, lctx: LinkCtx | None) -> None:
        state = dlv.remote_state
        token = delivery_tag(dlv)
        if lctx is None or lctx.kind != "consume" or state is None or lctx.receive_and_delete:
            if dlv.settled:
                dlv.settle()
            return
        remote = dlv.remote
        reason = description = None
        if state == Delivery.ACCEPTED:
            outcome = Outcome.COMPLETE
        elif state == Delivery.MODIFIED:
            outcome = Outcome.DEFER if remote.undeliverable else Outcome.ABANDON
        elif state == Delivery.REJECTED:
            outcome = Outcome.DEAD_LETTER
            cond = remote.condition
            if cond is not None:
                info = cond.info or {}
                reason = info.get("DeadLetterReason", info.get(symbol("DeadLetterReason")))
                description = info.get("DeadLetterErrorDescription", info.get(symbol("DeadLetterErrorDescription")))
                if description is None:
                    description = cond.description
        elif state == Delivery.RELEASED:
            outcome = Outcome.RELEASE
        else:
            return
        now = time.time()
        try:
            m = self.store.settle(token, outcome, now, reason=reason, description=description)
            if outcome is Outcome.COMPLETE or outcome is Outcome.DEAD_LETTER:
                self.parsed_cache.pop((m.queue, m.seq), None)
        except StoreError as exc:
            if dlv.settled:
                dlv.settle()
                return
            self._reject(dlv, exc.condition, exc.description)
            return
        if dlv.settled:
            dlv.settle()
            return
        if outcome is Outcome.COMPLETE or outcome is Outcome.RELEASE:
            # Committed lazily: a completion lost in a crash only means a redelivery.
            self._echo(dlv, state)
        else:
            # Dead-lettered, deferred and abandoned states are durable before the client hears of them.
            self.after_commit.append(lambda: self._echo(dlv, state))

    @staticmethod
    def _accept_request(dlv, data: bytes) -> Message:
        """Decode a request to a node ($cbs, $management) and settle its transfer; the answer is a reply message."""
        msg = Message()
        msg.decode(data)
        dlv.update(Delivery.ACCEPTED)
        dlv.settle()
        return msg

    @staticmethod
    def _echo(dlv, state) -> None:
        dlv.update(state)
        dlv.settle()

    # ----- $cbs ---------------------------------------------------------------------------------
    def _on_cbs(self, link, dlv, lctx: LinkCtx, data: bytes) -> None:
        msg = self._accept_request(dlv, data)
        props = msg.properties or {}
        op = props.get("operation")
        status, desc = 202, "Accepted"
        if op != "put-token":
            status, desc = 400, f"Unsupported $cbs operation {op!r}; only put-token is supported."
        else:
            try:
                granted = verify_sas(str(msg.body), self.config.key_name, self.config.key, time.time())
                lctx.conn.authorized.add(granted)
            except AuthError as exc:
                status, desc = 401, str(exc)
                log.warning("token refused", extra={"event": "auth-failed", "description": desc, "audience": props.get("name")})
        reply = Message(
            correlation_id=msg.id,
            properties={"status-code": status, "status-description": desc},
        )
        self._reply(lctx.conn, "$cbs", msg.reply_to, reply)

    def _reply(self, conn_ctx: ConnCtx, node: str, reply_to: str | None, reply: Message) -> None:
        if conn_ctx.closed:
            return
        link = None
        if reply_to:
            link = conn_ctx.reply_links.get(entity_path(reply_to).lower())
        if link is None:
            link = conn_ctx.reply_links.get(node.lower())
        if link is None:
            log.warning("no reply link for request", extra={"event": "no-reply-link", "node": node, "replyTo": reply_to})
            return
        tag = uuid.uuid4().bytes
        dlv = link.delivery(tag)
        link.send(reply.encode())
        link.advance()
        if link.snd_settle_mode == Link.SND_SETTLED:
            dlv.settle()

    # ----- $management --------------------------------------------------------------------------
    def _on_mgmt(self, link, dlv, lctx: LinkCtx, data: bytes) -> None:
        msg = self._accept_request(dlv, data)
        props = msg.properties or {}
        op = str(props.get("operation", ""))
        body = msg.body if isinstance(msg.body, dict) else {}
        body = {str(k): v for k, v in body.items()}
        now = time.time()
        status, desc, result, error_condition = 200, "OK", {}, None
        try:
            handler = _MGMT_OPS.get(op)
            if handler is None:
                raise StoreError(f"Unsupported management operation {op!r}.")
            status, result = handler(self, lctx, body, now)
        except StoreError as exc:
            error_condition, desc = exc.condition, exc.description
            status = {
                "amqp:not-found": 404, "com.microsoft:message-not-found": 404,
                "com.microsoft:message-lock-lost": 410, "com.microsoft:session-lock-lost": 410,
                "com.microsoft:argument-error": 400, "com.microsoft:session-cannot-be-locked": 409,
                "amqp:resource-limit-exceeded": 403, "amqp:link:message-size-exceeded": 413,
            }.get(exc.condition, 500)
            if type(exc) is StoreError:
                status, error_condition = 501, "amqp:not-implemented"
        except (KeyError, TypeError, ValueError) as exc:
            status, desc, error_condition = 400, f"Malformed {op} request: {exc!r}", "com.microsoft:argument-error"
        app = {"statusCode": status, "statusDescription": desc}
        if error_condition:
            app["errorCondition"] = symbol(error_condition)
        reply = Message(correlation_id=msg.id, properties=app, body=result)
        # Scheduled messages and session state are acknowledged only once they are durable.
        self.after_commit.append(lambda: self._reply(lctx.conn, lctx.path + "/$management", msg.reply_to, reply))

    def _session_consumer(self, lctx: LinkCtx, body: dict) -> Consumer | None:
        sid = body.get("session-id")
        if sid is None:
            return None
        entity = self.store.entity(lctx.path)
        session = entity.sessions.get(str(sid))
        return session.holder if session is not None else None

    def _op_renew_lock(self, lctx, body, now):
        tokens = [_token_bytes(t) for t in body["lock-tokens"]]
        expirations = self.store.renew_locks(tokens, now)
        return 200, {"expirations": [timestamp(int(e * 1000)) for e in expirations]}

    def _op_update_disposition(self, lctx, body, now):
        status = str(body["disposition-status"]).lower()
        outcome = {"completed": Outcome.COMPLETE, "abandoned": Outcome.ABANDON, "suspended": Outcome.DEAD_LETTER,
                   "defered": Outcome.DEFER, "deferred": Outcome.DEFER}.get(status)
        if outcome is None:
            raise InvalidRequest(f"Unknown disposition-status {status!r}.")
        reason = body.get("deadletter-reason")
        description = body.get("deadletter-description")
        for raw in body["lock-tokens"]:
            self.store.settle_deferred_aware(_token_bytes(raw), outcome, now, reason=reason, description=description)
        return 200, {}

    def _op_receive_by_seq(self, lctx, body, now):
        seqs = [int(s) for s in body["sequence-numbers"]]
        rad = int(body.get("receiver-settle-mode", 1)) == 0
        sid = body.get("session-id")
        consumer = self._session_consumer(lctx, body)
        messages = self.store.receive_deferred(lctx.path, seqs, now, consumer, receive_and_delete=rad,
                                               session_id=None if sid is None else str(sid))
        out = []
        for m in messages:
            locked = None if rad else m.locked_until
            item = {"message": self._encode(m, locked)}
            if not rad:
                item["lock-token"] = uuid.UUID(bytes_le=m.lock_token)
            out.append(item)
        return 200, {"messages": out}

    def _op_peek(self, lctx, body, now):
        from_seq = int(body.get("from-sequence-number", 0))
        count = int(body.get("message-count", 1))
        sid = body.get("session-id")
        messages = self.store.peek(lctx.path, from_seq, count, None if sid is None else str(sid))
        if not messages:
            return 204, {}
        return 200, {"messages": [{"message": self._encode(m, None)} for m in messages]}

    def _op_schedule(self, lctx, body, now):
        incoming = []
        for item in body["messages"]:
            raw = bytes(item["message"])
            inc = codec.read_incoming(raw)
            if inc.session_id is None and item.get("session-id") is not None:
                inc.session_id = str(item["session-id"])
            if inc.message_id is None and item.get("message-id") is not None:
                inc.message_id = str(item["message-id"])
            incoming.append(inc)
        seqs = self.store.enqueue(lctx.path, incoming, now)
        return 200, {"sequence-numbers": [int(s or 0) for s in seqs]}

    def _op_cancel(self, lctx, body, now):
        self.store.cancel_scheduled(lctx.path, [int(s) for s in body["sequence-numbers"]])
        return 200, {}

    def _op_renew_session(self, lctx, body, now):
        expiry = self.store.renew_session(None, lctx.path, str(body["session-id"]), now)
        return 200, {"expiration": timestamp(int(expiry * 1000))}

    def _op_get_state(self, lctx, body, now):
        state = self.store.get_session_state(lctx.path, str(body["session-id"]), now)
        return 200, {"session-state": state}

    def _op_set_state(self, lctx, body, now):
        raw = body.get("session-state")
        self.store.set_session_state(lctx.path, str(body["session-id"]), None if raw is None else bytes(raw), now)
        return 200, {}

    def _op_list_sessions(self, lctx, body, now):
        ids = self.store.list_sessions(lctx.path)
        skip = int(body.get("skip", 0) or 0)
        top = int(body.get("top", len(ids)) or len(ids))
        ids = ids[skip: skip + top]
        if not ids:
            return 204, {}
        return 200, {"sessions-ids": ids, "skip": skip + len(ids)}


def _token_bytes(raw) -> bytes:
    if isinstance(raw, uuid.UUID):
        return raw.bytes_le
    if isinstance(raw, (bytes, bytearray, memoryview)) and len(raw) == 16:
        return bytes(raw)
    return uuid.UUID(str(raw)).bytes_le


_MGMT_OPS = {
    VENDOR + "renew-lock": AmqpHandler._op_renew_lock,
    VENDOR + "update-disposition": AmqpHandler._op_update_disposition,
    VENDOR + "receive-by-sequence-number": AmqpHandler._op_receive_by_seq,
    VENDOR + "peek-message": AmqpHandler._op_peek,
    VENDOR + "schedule-message": AmqpHandler._op_schedule,
    VENDOR + "cancel-scheduled-message": AmqpHandler._op_cancel,
    VENDOR + "renew-session-lock": AmqpHandler._op_renew_session,
    VENDOR + "get-session-state": AmqpHandler._op_get_state,
    VENDOR + "set-session-state": AmqpHandler._op_set_state,
    VENDOR + "get-message-sessions": AmqpHandler._op_list_sessions,
}
