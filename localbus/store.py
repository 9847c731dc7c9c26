"""Queue semantics of the broker, independent of any wire protocol.

Everything Service Bus promises about a queue lives here: sequence numbers, peek-locks and their expiry,
delivery counts and MaxDeliveryCount, sessions and their exclusive locks, duplicate detection, time to
live, scheduled and deferred messages, and the dead-letter sub-queue. Message payloads are opaque bytes.
The operations only the ``$management`` node uses are in ``store_management``, timers in ``store_timers``.

All state is held in memory and mirrored to a ``Journal``; the caller decides when the journal commits
(the AMQP layer commits once per loop turn and only then acknowledges sends). Not thread-safe: one
thread owns a ``Store``; other threads ask that thread (the broker's loop) for a snapshot.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from typing import Iterable

from .config import INFINITE_SECONDS, BrokerConfig
from .entities import Consumer, Entity, Incoming, Outcome, Session, State, StoredMessage
from .errors import (EntityNotFound, InvalidRequest, MessageLockLost, MessageTooLarge, QuotaExceeded,
                     SessionCannotBeLocked, SessionLockLost)
from .journal import Journal, MemoryJournal
from .store_management import ManagementOperations
from .store_timers import DEAD_LETTER_AFTER_MAX_DELIVERIES, Timers


class Store(ManagementOperations, Timers):
    """All queues of one broker. ``now`` is epoch seconds, passed in by the caller.

    The I/O layer never edits the store's state: it calls these methods, and after each turn takes what
    changed with ``take_ready_entities`` and ``take_lost_sessions`` (each hands over and resets).
    """

    def __init__(self, config: BrokerConfig, journal: Journal | None = None) -> None:
        self.config = config
        self.journal: Journal = journal or MemoryJournal()
        self.entities: dict[str, Entity] = {}
        self.queues: dict[str, tuple[Entity, Entity]] = {}
        for q in config.queues:
            main, dlq = Entity(q, False), Entity(q, True)
            self.queues[q.name] = (main, dlq)
            self.entities[main.path.lower()] = main
            self.entities[dlq.path.lower()] = dlq
        self.next_seq: dict[str, int] = {q.name: 1 for q in config.queues}
        self.dedup: dict[str, dict[str, float]] = {q.name: {} for q in config.queues}
        self.locks: dict[bytes, StoredMessage] = {}
        self._lock_expiry: list[tuple[float, bytes]] = []
        self._scheduled: list[tuple[float, str, int]] = []
        self._ttl: list[tuple[float, str, bool, int]] = []
        self._session_expiry: list[tuple[float, int, Session]] = []
        self._tiebreak = itertools.count()
        self._ready_entities: set[Entity] = set()  # entities that gained available messages since the last take
        self._lost_sessions: list[tuple[Consumer, Session]] = []  # session locks that expired since the last take
        self._load()

    # ----- lookup -------------------------------------------------------------------------------
    def entity(self, path: str) -> Entity:
        """The entity for an address path such as ``orders`` or ``orders/$DeadLetterQueue``."""
        entity = self.entities.get(path.strip("/").lower())
        if entity is None:
            known = ", ".join(sorted(q.name for q in self.config.queues)) or "none"
            raise EntityNotFound(
                f"The messaging entity '{path}' could not be found. Declare it in the broker's config file "
                f"(queues configured: {known})."
            )
        return entity

    def _dlq(self, message: StoredMessage) -> Entity:
        return self.queues[message.queue][1]

    def _main(self, message: StoredMessage) -> Entity:
        return self.queues[message.queue][0]

    def _entity_of(self, message: StoredMessage) -> Entity:
        pair = self.queues[message.queue]
        return pair[1] if message.dead_lettered else pair[0]

    # ----- loading ------------------------------------------------------------------------------
    def _load(self) -> None:
        messages, session_states, dedup_rows, next_seq = self.journal.load()
        for name, seq in next_seq.items():
            if name in self.next_seq:
                self.next_seq[name] = max(self.next_seq[name], seq)
        for m in messages:
            if m.queue not in self.queues:
                continue
            self.next_seq[m.queue] = max(self.next_seq[m.queue], m.seq + 1)
            self._add(self._entity_of(m), m)
        for (queue, session_id), (state, updated_at) in session_states.items():
            if queue in self.queues:
                session = self._session(self.queues[queue][0], session_id)
                session.state, session.state_updated_at = state, updated_at
        for queue, mid, expires in dedup_rows:
            if queue in self.dedup:
                self.dedup[queue][mid] = expires

    # ----- internal bookkeeping -----------------------------------------------------------------
    def _session(self, entity: Entity, session_id: str) -> Session:
        session = entity.sessions.get(session_id)
        if session is None:
            session = entity.sessions[session_id] = Session(session_id)
        return session

    def _add(self, entity: Entity, m: StoredMessage) -> None:
        entity.messages[m.seq] = m
        entity.bytes += m.size
        if entity.sessionful:
            self._session(entity, m.session_id or "").count += 1
        if m.state is State.SCHEDULED:
            heapq.heappush(self._scheduled, (m.scheduled_at or 0.0, m.queue, m.seq))
        elif m.state is State.ACTIVE:
            self._make_ready(entity, m)
        if m.expires_at < float("inf"):
            heapq.heappush(self._ttl, (m.expires_at, m.queue, m.dead_lettered, m.seq))

    def _make_ready(self, entity: Entity, m: StoredMessage) -> None:
        if entity.sessionful:
            heapq.heappush(self._session(entity, m.session_id or "").ready, m.seq)
        else:
            heapq.heappush(entity.ready, m.seq)
        self._ready_entities.add(entity)

    def _remove(self, entity: Entity, m: StoredMessage, persist: bool = True) -> None:
        if m.removed:
            return
        self._unlock(m)
        m.removed = True
        del entity.messages[m.seq]
        entity.bytes -= m.size
        if entity.sessionful:
            session = entity.sessions.get(m.session_id or "")
            if session is not None:
                session.count -= 1
                self._maybe_forget_session(entity, session)
        if persist:
            self.journal.delete(m)

    def _maybe_forget_session(self, entity: Entity, session: Session) -> None:
        if session.count <= 0 and session.holder is None and session.state is None:
            entity.sessions.pop(session.id, None)

    def _unlock(self, m: StoredMessage) -> None:
        if m.lock_token is not None:
            self.locks.pop(m.lock_token, None)
            if m.holder is not None:
                m.holder.locked.pop(m.lock_token, None)
            m.lock_token = None
            m.holder = None
            m.locked_until = 0.0

    def _dead_letter(self, m: StoredMessage, reason: str | None, description: str | None, now: float) -> None:
        main = self._main(m)
        self._remove(main, m, persist=False)
        m.removed = False
        m.dead_lettered = True
        m.state = State.ACTIVE
        m.dead_letter_reason = reason
        m.dead_letter_description = description
        m.dead_letter_source = main.path
        m.expires_at = float("inf")  # dead-lettered messages never expire
        self._add(self._dlq(m), m)
        self.journal.put(m)

    def _expired(self, entity: Entity, m: StoredMessage, now: float) -> None:
        if not entity.dead_letter and entity.config.dead_lettering_on_message_expiration:
            self._dead_letter(m, "TTLExpiredException", "The message expired and was dead lettered.", now)
        else:
            self._remove(entity, m)

    # ----- sending ------------------------------------------------------------------------------
    def enqueue(self, path: str, batch: Iterable[Incoming], now: float) -> list[int | None]:
        """Accept a batch atomically; return each message's sequence number (None: a dropped duplicate)."""
        entity = self.entity(path)
        if entity.dead_letter:
            raise InvalidRequest(f"Cannot send to '{entity.path}': a dead-letter queue only receives dead-lettered messages.")
        cfg = entity.config
        batch = list(batch)
        for item in batch:
            if cfg.requires_session and not item.session_id:
                raise InvalidRequest(
                    f"The queue '{cfg.name}' requires sessions: set session_id on every message sent to it."
                )
            if len(item.payload) > cfg.max_message_size_bytes:
                raise MessageTooLarge(
                    f"The message of {len(item.payload)} bytes exceeds the queue's maximum message size of "
                    f"{cfg.max_message_size_bytes} bytes (maxMessageSizeInKilobytes)."
                )
        incoming_bytes = sum(len(i.payload) for i in batch)
        if entity.bytes + incoming_bytes > cfg.max_size_bytes:
            raise QuotaExceeded(
                f"The queue '{cfg.name}' is full ({entity.bytes} bytes of {cfg.max_size_bytes}, maxSizeInMegabytes). "
                "Receive or purge messages before sending more."
            )
        dedup = self.dedup[cfg.name] if cfg.requires_duplicate_detection else None
        results: list[int | None] = []
        for item in batch:
            if dedup is not None and item.message_id is not None:
                seen = dedup.get(item.message_id)
                if seen is not None and seen > now:
                    results.append(None)
                    continue
                expires = now + cfg.duplicate_detection_window
                dedup[item.message_id] = expires
                self.journal.put_dedup(cfg.name, item.message_id, expires)
            seq = self.next_seq[cfg.name]
            self.next_seq[cfg.name] = seq + 1
            ttl = cfg.default_message_ttl if item.ttl is None else min(item.ttl, cfg.default_message_ttl)
            scheduled = item.scheduled_at if item.scheduled_at is not None and item.scheduled_at > now else None
            base = scheduled if scheduled is not None else now
            m = StoredMessage(
                queue=cfg.name,
                seq=seq,
                payload=item.payload,
                message_id=item.message_id,
                session_id=item.session_id,
                enqueued_at=base,
                expires_at=base + ttl if ttl < INFINITE_SECONDS else float("inf"),
                state=State.SCHEDULED if scheduled is not None else State.ACTIVE,
                scheduled_at=scheduled,
            )
            self._add(entity, m)
            self.journal.put(m, fresh=True)
            results.append(seq)
        self.journal.put_next_seq(cfg.name, self.next_seq[cfg.name])
        return results

    # ----- receiving ----------------------------------------------------------------------------
    def attach(self, path: str, *, receive_and_delete: bool = False, name: str = "") -> Consumer:
        entity = self.entity(path)
        if entity.sessionful:
            raise InvalidRequest(
                f"The queue '{entity.path}' requires sessions: receive with a session receiver (session_id=...)."
            )
        consumer = Consumer(entity, receive_and_delete, None, name)
        entity.consumers.append(consumer)
        return consumer

    def accept_session(self, path: str, session_id: str | None, now: float, *, receive_and_delete: bool = False, name: str = "") -> Consumer | None:
        """Lock a named session, or the next free session with messages (``session_id=None``).

        Returns None when no session is free (NEXT_AVAILABLE); raises ``SessionCannotBeLocked`` when the
        named session is held by another receiver.
        """
        entity = self.entity(path)
        if not entity.sessionful:
            raise InvalidRequest(f"The queue '{entity.path}' does not require sessions: receive without session_id.")
        if session_id is None:
            best: Session | None = None
            for session in entity.sessions.values():
                if session.holder is None and session.ready:
                    if best is None or session.ready[0] < best.ready[0]:
                        best = session
            if best is None:
                return None
            session = best
        else:
            session = self._session(entity, session_id)
            if session.holder is not None:
                raise SessionCannotBeLocked(
                    f"The session '{session_id}' is locked by another receiver. Retry after it closes or its lock expires."
                )
        consumer = Consumer(entity, receive_and_delete, session, name)
        session.holder = consumer
        session.locked_until = now + entity.config.lock_duration
        heapq.heappush(self._session_expiry, (session.locked_until, next(self._tiebreak), session))
        entity.consumers.append(consumer)
        return consumer

    def detach(self, consumer: Consumer, now: float) -> None:
        """A receiver went away. Its session lock is released; message locks stay until they expire."""
        entity = consumer.entity
        if consumer in entity.consumers:
            entity.consumers.remove(consumer)
        session = consumer.session
        if session is not None and session.holder is consumer:
            self._release_session(entity, session, consumer, now)

    def _release_session(self, entity: Entity, session: Session, consumer: Consumer, now: float) -> None:
        # Messages received under the session lock become available again, in sequence order.
        for m in list(consumer.locked.values()):
            self._unlock(m)
            if not m.removed:
                if m.delivery_count + 1 >= entity.config.max_delivery_count:
                    m.delivery_count += 1
                    self._dead_letter(m, *DEAD_LETTER_AFTER_MAX_DELIVERIES, now)
                else:
                    m.delivery_count += 1
                    self.journal.put(m)
                    self._make_ready(entity, m)
        session.holder = None
        session.locked_until = 0.0
        if session.ready:
            self._ready_entities.add(entity)
        self._maybe_forget_session(entity, session)

    def next_message(self, consumer: Consumer, now: float) -> StoredMessage | None:
        """Lock (or, in receive-and-delete mode, remove) the next available message for ``consumer``."""
        entity = consumer.entity
        if consumer.session is not None:
            session = consumer.session
            if session.holder is not consumer:
                return None
            heap = session.ready
        else:
            heap = entity.ready
        while heap:
            seq = heapq.heappop(heap)
            m = entity.messages.get(seq)
            if m is None or m.state is not State.ACTIVE or m.lock_token is not None:
                continue
            if m.expires_at <= now:
                self._expired(entity, m, now)
                continue
            if consumer.receive_and_delete:
                self._remove(entity, m)
                return m
            token = uuid.uuid4().bytes
            m.lock_token = token
            m.holder = consumer
            if consumer.session is not None:
                m.locked_until = consumer.session.locked_until
            else:
                m.locked_until = now + entity.config.lock_duration
                heapq.heappush(self._lock_expiry, (m.locked_until, token))
            self.locks[token] = m
            consumer.locked[token] = m
            return m
        return None

    def has_ready(self, consumer: Consumer) -> bool:
        if consumer.session is not None:
            return bool(consumer.session.ready) and consumer.session.holder is consumer
        return bool(consumer.entity.ready)

    def settle(self, token: bytes, outcome: Outcome, now: float, *, reason: str | None = None,
               description: str | None = None, session_id: str | None = None) -> StoredMessage:
        """Apply a settlement to the message holding lock ``token``."""
        m = self.locks.get(token)
        if m is None or m.removed:
            raise MessageLockLost(
                "The lock supplied is invalid: it expired, or the message was already settled or received by "
                "another receiver. Receive the message again."
            )
        entity = self._entity_of(m)
        holder = m.holder
        if holder is not None and holder.session is not None:
            session = holder.session
            if session.holder is not holder or session.locked_until <= now:
                raise SessionLockLost(
                    f"The session lock of '{session.id}' was lost. Accept the session again to continue."
                )
        elif m.locked_until <= now:
            raise MessageLockLost(
                "The lock supplied has expired. Renew locks before they expire, or receive the message again."
            )
        if outcome is Outcome.COMPLETE:
            self._remove(entity, m)
        elif outcome is Outcome.ABANDON:
            self._unlock(m)
            m.delivery_count += 1
            if m.delivery_count >= entity.config.max_delivery_count and not entity.dead_letter:
                self._dead_letter(m, *DEAD_LETTER_AFTER_MAX_DELIVERIES, now)
            else:
                self.journal.put(m)
                self._make_ready(entity, m)
        elif outcome is Outcome.RELEASE:
            self._unlock(m)
            self._make_ready(entity, m)
        elif outcome is Outcome.DEFER:
            self._unlock(m)
            m.state = State.DEFERRED
            self.journal.put(m)
        elif outcome is Outcome.DEAD_LETTER:
            self._unlock(m)
            if entity.dead_letter:
                raise InvalidRequest("A message in a dead-letter queue cannot be dead-lettered again; complete it instead.")
            self._dead_letter(m, reason, description, now)
        return m


    # ----- what changed, handed over once -------------------------------------------------------
    def take_ready_entities(self) -> set[Entity]:
        """Entities that gained available messages since the last call."""
        ready, self._ready_entities = self._ready_entities, set()
        return ready

    def take_lost_sessions(self) -> list[tuple[Consumer, Session]]:
        """Session locks that expired since the last call, with the consumer that held each."""
        lost, self._lost_sessions = self._lost_sessions, []
        return lost

    def consumers_in_turn(self, entity: Entity) -> list[Consumer]:
        """The entity's consumers, rotated one place per call so competing consumers share the work."""
        consumers = entity.consumers
        if len(consumers) > 1:
            consumers.append(consumers.pop(0))
        return list(consumers)

    def session_holder(self, path: str, session_id: str) -> Consumer | None:
        """The consumer holding the lock of a session, if any."""
        session = self.entity(path).sessions.get(session_id)
        return session.holder if session is not None else None

    def has_uncommitted(self) -> bool:
        return self.journal.pending()

    def commit(self) -> None:
        """Make every change so far durable (one journal transaction)."""
        self.journal.commit()

    def close(self) -> None:
        self.journal.close()

