"""Links: attaching senders, receivers, session receivers and the nodes' request/reply links; waiting for a
session to become free; detaching."""

from __future__ import annotations

import logging
import time

from proton import Endpoint, Link, Terminus, symbol

from .authorization import AuthError, authorize
from .actions import VENDOR, condition
from .deliveries import Deliveries
from .entities import Consumer, Entity, Session
from .errors import InvalidRequest, SessionCannotBeLocked, StoreError
from .link_state import ConnectionState, LinkRole, LinkState, entity_path, link_state
from .store import Store

log = logging.getLogger("localbus.amqp")

SESSION_FILTER = symbol(VENDOR + "session-filter")
LOCKED_UNTIL_UTC = symbol(VENDOR + "locked-until-utc")
TIMEOUT_PROP = symbol(VENDOR + "timeout")
SEND_CREDIT = 1000
REQUEST_CREDIT = 100
DEFAULT_SESSION_WAIT = 65.0
DOTNET_EPOCH_TICKS = 621355968000000000
MANAGEMENT_SUFFIX = "/$management"


def dotnet_ticks(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000) * 10000 + DOTNET_EPOCH_TICKS


def _source_filters(link: Link) -> dict:
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
    for key, item in value.items():
        if hasattr(item, "value") and hasattr(item, "descriptor"):
            item = item.value
        out[symbol(str(key))] = item
    return out


class Links:
    """Every link of the broker, and which link serves which store consumer."""

    def __init__(self, store: Store, deliveries: Deliveries) -> None:
        self.store = store
        self.deliveries = deliveries
        self.consumers: dict[Consumer, Link] = {}
        self.waiting_for_session: list[Link] = []

    # ----- attach -------------------------------------------------------------------------------
    def open(self, link: Link, connection: ConnectionState, now: float) -> None:
        try:
            if link.is_receiver:
                self._open_incoming(link, connection)
            else:
                self._open_outgoing(link, connection, now)
        except StoreError as exc:
            self._refuse(link, exc.condition, exc.description)
        except AuthError as exc:
            self._refuse(link, "amqp:unauthorized-access", str(exc))

    def _open_incoming(self, link: Link, connection: ConnectionState) -> None:
        """The client sends to us: a queue, $cbs, or a management node."""
        path = entity_path(link.remote_target.address)
        link.target.copy(link.remote_target)
        link.source.copy(link.remote_source)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if path.lower() == "$cbs":
            state = LinkState(LinkRole.CBS, path, connection)
        elif path.lower().endswith(MANAGEMENT_SUFFIX):
            node = path[: -len(MANAGEMENT_SUFFIX)]
            authorize(connection, node)
            self.store.entity(node)
            state = LinkState(LinkRole.MANAGEMENT, node, connection)
        else:
            authorize(connection, path)
            entity = self.store.entity(path)
            if entity.dead_letter:
                raise InvalidRequest(f"Cannot send to '{entity.path}': send to '{entity.config.name}' instead.")
            state = LinkState(LinkRole.SEND, entity.config.name, connection)
            link.max_message_size = entity.config.max_message_size_bytes
        self._remember(link, state)
        link.open()
        link.flow(SEND_CREDIT if state.role is LinkRole.SEND else REQUEST_CREDIT)

    def _open_outgoing(self, link: Link, connection: ConnectionState, now: float) -> None:
        """The client receives from us: a queue (or its DLQ, or a session), or replies of $cbs/$management."""
        path = entity_path(link.remote_source.address)
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if path.lower() == "$cbs":
            self._remember(link, LinkState(LinkRole.CBS_REPLY, path, connection))
            connection.reply_links["$cbs"] = link
            link.open()
            return
        if path.lower().endswith(MANAGEMENT_SUFFIX):
            node = path[: -len(MANAGEMENT_SUFFIX)]
            authorize(connection, node)
            self.store.entity(node)
            self._remember(link, LinkState(LinkRole.MANAGEMENT_REPLY, node, connection))
            connection.reply_links[path.lower()] = link
            target = entity_path(link.remote_target.address).lower()
            if target:
                connection.reply_links[target] = link
            link.open()
            return
        authorize(connection, path)
        entity = self.store.entity(path)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        state = LinkState(LinkRole.CONSUME, entity.path, connection)
        state.receive_and_delete = link.remote_snd_settle_mode == Link.SND_SETTLED
        self._remember(link, state)
        filters = _source_filters(link)
        if entity.sessionful or SESSION_FILTER in filters:
            self._open_session_receiver(link, state, entity, filters, now)
            return
        consumer = self.store.attach(entity.path, receive_and_delete=state.receive_and_delete, name=link.name)
        state.consumer = consumer
        self.consumers[consumer] = link
        link.open()

    def _remember(self, link: Link, state: LinkState) -> None:
        link.link_state = state
        state.connection.links.add(link)

    # ----- sessions -----------------------------------------------------------------------------
    def _open_session_receiver(self, link: Link, state: LinkState, entity: Entity, filters: dict, now: float) -> None:
        if not entity.sessionful:
            raise InvalidRequest(f"The queue '{entity.path}' does not require sessions: receive without session_id.")
        requested = filters.get(SESSION_FILTER)
        state.requested_session = None if requested is None else str(requested)
        timeout_ms = (link.remote_properties or {}).get(TIMEOUT_PROP)
        wait = DEFAULT_SESSION_WAIT if timeout_ms is None else max(0.0, int(timeout_ms) / 1000.0)
        state.deadline = now + wait
        if not self._try_session(link, state, now):
            state.waiting_for_session = True
            self.waiting_for_session.append(link)

    def _try_session(self, link: Link, state: LinkState, now: float) -> bool:
        """Lock the requested (or next free) session for ``link``; open the link when done."""
        try:
            consumer = self.store.accept_session(state.path, state.requested_session, now,
                                                 receive_and_delete=state.receive_and_delete, name=link.name)
        except SessionCannotBeLocked as exc:
            state.waiting_for_session = False
            link.open()
            self.close(link, exc.condition, exc.description)
            return True
        if consumer is None:
            return False
        session = consumer.session
        state.consumer = consumer
        state.waiting_for_session = False
        self.consumers[consumer] = link
        source = link.source
        source.copy(link.remote_source)
        session_filter = source.filter
        session_filter.clear()
        session_filter.put_map()
        session_filter.enter()
        session_filter.put_symbol(SESSION_FILTER)
        session_filter.put_string(session.id)
        session_filter.exit()
        link.properties = {LOCKED_UNTIL_UTC: dotnet_ticks(session.locked_until)}
        link.open()
        log.debug("session locked", extra={"event": "session-locked", "session": session.id, "queue": state.path})
        self.deliveries.pump(link, consumer, now)
        return True

    def serve_session_waits(self, entity: Entity, now: float) -> None:
        """Receivers waiting for a session of ``entity`` get one if it now has a free session."""
        for link in list(self.waiting_for_session):
            state = link_state(link)
            if state.path.lower() != entity.path.lower():
                continue
            if self._try_session(link, state, now) and link in self.waiting_for_session:
                self.waiting_for_session.remove(link)

    def expire_session_waits(self, now: float) -> None:
        for link in list(self.waiting_for_session):
            state = link_state(link)
            if state.deadline <= now:
                self.waiting_for_session.remove(link)
                state.waiting_for_session = False
                link.open()
                self.close(link, VENDOR + "timeout",
                           "No session became available within the wait time. Retry later or raise max_wait_time.")

    def session_lost(self, consumer: Consumer, session: Session) -> None:
        link = self.consumers.pop(consumer, None)
        if link is not None:
            log.info("session lock expired", extra={"event": "session-lock-lost", "session": session.id,
                                                    "queue": consumer.entity.path})
            self.close(link, VENDOR + "session-lock-lost",
                       f"The session lock of '{session.id}' expired. Accept the session again to continue.")

    # ----- serving ------------------------------------------------------------------------------
    def serve(self, entity: Entity, now: float) -> None:
        """``entity`` gained ready messages: hand them to waiting session receivers and consumers."""
        if entity.sessionful:
            self.serve_session_waits(entity, now)
        for consumer in self.store.consumers_in_turn(entity):
            link = self.consumers.get(consumer)
            if link is not None:
                self.deliveries.pump(link, consumer, now)

    def flow(self, link: Link) -> None:
        state = link_state(link)
        if state is None or state.consumer is None:
            if link.drain_mode:
                link.drained()
            return
        self.deliveries.pump(link, state.consumer, time.time())

    # ----- detach -------------------------------------------------------------------------------
    def _refuse(self, link: Link, condition_name: str, description: str) -> None:
        address = link.remote_target.address if link.is_receiver else link.remote_source.address
        log.info("link refused", extra={"event": "link-refused", "condition": condition_name,
                                       "description": description, "address": address})
        # A refused attach carries a null terminus, so the client never sees the link as usable.
        if link.is_receiver:
            link.source.copy(link.remote_source)
            link.target.type = Terminus.UNSPECIFIED
        else:
            link.target.copy(link.remote_target)
            link.source.type = Terminus.UNSPECIFIED
        link.open()
        self.close(link, condition_name, description)

    def close(self, link: Link, condition_name: str | None, description: str | None) -> None:
        if condition_name is not None:
            link.condition = condition(condition_name, description)
        self.forget(link, time.time())
        link.close()

    def forget(self, link: Link, now: float) -> None:
        """The link is gone: release its consumer (and session lock)."""
        state = link_state(link)
        if state is None:
            return
        if state.consumer is not None:
            self.consumers.pop(state.consumer, None)
            self.store.detach(state.consumer, now)
            state.consumer = None
        if state.waiting_for_session and link in self.waiting_for_session:
            self.waiting_for_session.remove(link)
        state.waiting_for_session = False
        state.connection.links.discard(link)

    def remote_closed(self, link: Link, connection: ConnectionState | None) -> None:
        self.forget(link, time.time())
        if connection is not None:
            for key, value in list(connection.reply_links.items()):
                if value is link:
                    del connection.reply_links[key]
        if link.state & Endpoint.LOCAL_ACTIVE or link.state & Endpoint.LOCAL_UNINIT:
            link.close()
