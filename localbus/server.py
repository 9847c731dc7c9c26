"""The AMQP 1.0 side of the broker: Service Bus' dialect over the queue semantics in ``store``.

One loop thread (``loop.EventLoop``) owns every connection and the store. Work done while handling one turn's
events is committed to the journal once at the end of the turn (group commit); only then are sends
acknowledged, and receivers of entities that gained messages are served. Other threads reach the loop only
through ``EventLoop.call_soon_threadsafe``.

This module handles the loop's events and the commit; the rest lives in one module per concern:
``authorization`` (SAS and ``$cbs``), ``links`` (attach, sessions, detach), ``deliveries`` (transfers and
settlements), ``management`` (the ``$management`` node), ``actions`` (answers that wait for the commit).
"""

from __future__ import annotations

import functools
import logging
import time

from proton import Condition, Delivery, Message

from . import authorization
from .actions import AfterCommit, SendReply
from .config import BrokerConfig
from .deliveries import Deliveries
from .link_state import ConnectionState, LinkRole, LinkState, link_state
from .links import SEND_CREDIT, Links
from .loop import EventLoop
from .management import ManagementNode
from .store import Store

log = logging.getLogger("localbus.amqp")

LAZY_COMMIT_SECONDS = 0.1
MALFORMED_INPUT_CONDITIONS = ("amqp:connection:framing-error", "amqp:decode-error", "amqp:not-allowed")


def _guarded(method):
    """A failure while handling one event is logged; it never stops the loop."""

    @functools.wraps(method)
    def wrapper(self, event):
        try:
            return method(self, event)
        except Exception:  # noqa: BLE001
            log.exception("error while handling %s", method.__name__, extra={"event": "handler-error"})
            try:
                connection = event.connection
                if connection is not None and method.__name__ != "on_transport_closed":
                    connection.condition = Condition("amqp:internal-error",
                                                     "The broker failed to handle a request on this connection.")
                    connection.close()
            except Exception:  # noqa: BLE001
                pass

    return wrapper


def _ordinary_shutdown(condition: str | None, description: str | None) -> bool:
    """What the SDK does on every normal close, which Proton reports as errors: it closes the socket without a
    CLOSE frame ("connection aborted"), or sends a DETACH after its END ("no such channel")."""
    text = description or ""
    return ((condition == "amqp:connection:framing-error" and text == "connection aborted")
            or (condition == "amqp:not-allowed" and text.startswith("no such channel")))


def _accept_request(delivery: Delivery, data: bytes) -> Message:
    """Decode a request to a node ($cbs, $management) and settle its transfer; the answer is a reply message."""
    request = Message()
    request.decode(data)
    delivery.update(Delivery.ACCEPTED)
    delivery.settle()
    return request


class AmqpHandler:
    """Serves every connection; runs on the event loop's thread. ``loop.EventLoop`` calls the ``on_*``
    methods named in its dispatch table, ``flush()`` once per turn and ``tick()`` on its timer."""

    def __init__(self, store: Store, config: BrokerConfig) -> None:
        self.store = store
        self.config = config
        self.loop: EventLoop | None = None
        self.deliveries = Deliveries(store)
        self.links = Links(store, self.deliveries)
        self.management = ManagementNode(store, self.deliveries.encode)
        self.after_commit: list[AfterCommit] = []
        self.last_commit = 0.0
        self.connections: set = set()
        self.stopping = False

    # ----- loop lifecycle -----------------------------------------------------------------------
    def tick(self) -> None:
        if self.stopping:
            return
        now = time.time()
        self.store.tick(now)
        self.links.expire_session_waits(now)
        self._commit(force=False)

    def _commit(self, force: bool) -> None:
        """Commit the journal: now if ``force``, else at most every LAZY_COMMIT_SECONDS."""
        if not self.store.has_uncommitted():
            return
        now = time.monotonic()
        if not force and now - self.last_commit < LAZY_COMMIT_SECONDS:
            return
        try:
            self.store.commit()
        except Exception:
            log.exception("journal commit failed; unacknowledged sends are not acknowledged",
                          extra={"event": "commit-failed"})
            raise
        self.last_commit = now

    def flush(self) -> None:
        """Group commit, then everything that had to wait for it.

        Sends, dead-letters, deferrals, abandons and management requests are answered only after their
        commit. Completions are echoed at once and committed lazily (within LAZY_COMMIT_SECONDS): losing the
        last completions in a crash means a redelivery, which at-least-once delivery allows anyway.
        """
        if self.after_commit:
            self._commit(force=True)
            actions, self.after_commit = self.after_commit, []
            for action in actions:
                action.run()
        else:
            self._commit(force=False)
        for consumer, session in self.store.take_lost_sessions():
            self.links.session_lost(consumer, session)
        ready = self.store.take_ready_entities()
        if ready:
            now = time.time()
            for entity in ready:
                self.links.serve(entity, now)
            self._commit(force=False)

    def shutdown(self) -> None:
        """Loop thread: stop accepting, close every connection, commit, end the loop."""
        self.stopping = True
        self.loop.close_listener()
        for connection in list(self.connections):
            try:
                connection.condition = Condition("amqp:connection:forced", "The broker is shutting down.")
                connection.close()
            except Exception:  # noqa: BLE001
                pass
        self.flush()
        self._commit(force=True)
        self.loop.flush_output()
        self.loop.stop()

    # ----- connections --------------------------------------------------------------------------
    @_guarded
    def on_connection_remote_open(self, event) -> None:
        connection = event.connection
        connection.state_of_client = ConnectionState(str(getattr(connection, "peer", "")),
                                                     getattr(connection, "numbering", None))
        self.connections.add(connection)
        connection.container = "localbus"
        connection.open()

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
        if event.connection is not None:
            self._drop_connection(event.connection)

    @_guarded
    def on_transport_tail_closed(self, event) -> None:
        # The peer stopped sending (EOF or a crash): nothing more can happen on this connection.
        if event.connection is not None:
            self._drop_connection(event.connection)
        event.transport.close_head()

    @_guarded
    def on_transport_error(self, event) -> None:
        cond = event.transport.condition
        connection = event.connection
        peer = getattr(connection, "peer", None) if connection is not None else None
        name = cond.name if cond is not None else None
        description = cond.description if cond is not None else None
        fields = {"peer": peer, "condition": name, "description": description}
        if _ordinary_shutdown(name, description):
            log.info("client closed the connection", extra={"event": "client-shutdown", **fields})
        elif name in MALFORMED_INPUT_CONDITIONS:
            log.warning("malformed input; connection dropped", extra={"event": "malformed-input", **fields})
        else:
            log.info("connection ended", extra={"event": "connection-ended", **fields})

    def _drop_connection(self, connection) -> None:
        state: ConnectionState | None = getattr(connection, "state_of_client", None)
        self.connections.discard(connection)
        if state is None or state.closed:
            return
        state.closed = True
        now = time.time()
        for link in list(state.links):
            self.links.forget(link, now)
        state.links.clear()
        state.reply_links.clear()

    # ----- links --------------------------------------------------------------------------------
    @_guarded
    def on_link_remote_open(self, event) -> None:
        self.links.open(event.link, event.connection.state_of_client, time.time())

    @_guarded
    def on_link_remote_close(self, event) -> None:
        self.links.remote_closed(event.link, getattr(event.connection, "state_of_client", None))

    @_guarded
    def on_link_flow(self, event) -> None:
        if event.link.is_sender:
            self.links.flow(event.link)

    # ----- deliveries ---------------------------------------------------------------------------
    @_guarded
    def on_delivery(self, event) -> None:
        delivery = event.delivery
        link = event.link
        state = link_state(link)
        if not link.is_receiver:
            if delivery.updated:
                self._later(self.deliveries.settle(delivery, state))
            return
        if delivery.partial:
            return
        if delivery.aborted:
            delivery.settle()
            return
        data = link.recv(delivery.pending)
        link.advance()
        if state is None:
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        if state.role is LinkRole.SEND:
            self._later(self.deliveries.receive_send(delivery, state, data))
        elif state.role is LinkRole.CBS:
            self._on_cbs_request(delivery, state, data)
        elif state.role is LinkRole.MANAGEMENT:
            self._on_management_request(delivery, state, data)
        if link.credit < SEND_CREDIT // 2:
            link.flow(SEND_CREDIT - link.credit)

    def _later(self, action: AfterCommit | None) -> None:
        if action is not None:
            self.after_commit.append(action)

    def _on_cbs_request(self, delivery: Delivery, state: LinkState, data: bytes) -> None:
        request = _accept_request(delivery, data)
        reply = authorization.put_token(request, state.connection, self.config)
        state.connection.reply("$cbs", request.reply_to, reply)

    def _on_management_request(self, delivery: Delivery, state: LinkState, data: bytes) -> None:
        request = _accept_request(delivery, data)
        reply = self.management.answer(state, request, time.time())
        # Scheduled messages and session state are acknowledged only once they are durable.
        self.after_commit.append(SendReply(state.connection, state.path + "/$management", request.reply_to, reply))
