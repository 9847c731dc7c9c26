"""Queue semantics of the broker, independent of any wire protocol.

Everything Service Bus promises about a queue lives here: sequence numbers, peek-locks and their expiry,
delivery counts and MaxDeliveryCount, sessions and their exclusive locks, duplicate detection, time to
live, scheduled and deferred messages, and the dead-letter sub-queue. Message payloads are opaque bytes.

All state is held in memory and mirrored to a ``Journal``; the caller decides when the journal commits
(the AMQP layer commits once per reactor turn and only then acknowledges sends). Not thread-safe: one
thread owns a ``Store``; other threads ask that thread (the broker's loop) for a snapshot.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterable, Protocol

from .config import INFINITE_SECONDS, BrokerConfig, QueueConfig

DLQ_SUFFIX = "/$deadletterqueue"


class State(IntEnum):
    ACTIVE = 0
    DEFERRED = 1
    SCHEDULED = 2


class Outcome(IntEnum):
    COMPLETE = 0
    ABANDON = 1
    DEFER = 2
    DEAD_LETTER = 3
    RELEASE = 4  # handed back unseen: no delivery-count increment


class StoreError(Exception):
    """A request the store refuses; ``condition`` names the Service Bus error."""

    condition = "amqp:internal-error"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class EntityNotFound(StoreError):
    condition = "amqp:not-found"


class MessageLockLost(StoreError):
    condition = "com.microsoft:message-lock-lost"


class SessionLockLost(StoreError):
    condition = "com.microsoft:session-lock-lost"


class SessionCannotBeLocked(StoreError):
    condition = "com.microsoft:session-cannot-be-locked"


class MessageNotFound(StoreError):
    condition = "com.microsoft:message-not-found"


class InvalidRequest(StoreError):
    condition = "com.microsoft:argument-error"


class QuotaExceeded(StoreError):
    condition = "amqp:resource-limit-exceeded"


class MessageTooLarge(StoreError):
    condition = "amqp:link:message-size-exceeded"


@dataclass(slots=True)
class Incoming:
    """A message as a sender hands it over."""

    payload: bytes
    message_id: str | None = None
    session_id: str | None = None
    ttl: float | None = None  # seconds; None: the queue's default
    scheduled_at: float | None = None  # epoch seconds


@dataclass(slots=True, eq=False)
class StoredMessage:
    queue: str  # config name of the queue
    seq: int
    payload: bytes
    message_id: str | None
    session_id: str | None
    enqueued_at: float
    expires_at: float
    state: State = State.ACTIVE
    scheduled_at: float | None = None
    delivery_count: int = 0
    dead_lettered: bool = False
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None
    dead_letter_source: str | None = None
    lock_token: bytes | None = None  # 16 bytes; the AMQP delivery tag
    locked_until: float = 0.0
    holder: "Consumer | None" = None
    removed: bool = False

    @property
    def size(self) -> int:
        return len(self.payload)


class Journal(Protocol):
    """Durable mirror of the store. Writes are buffered until ``commit``."""

    def load(self) -> tuple[list[StoredMessage], dict[tuple[str, str], bytes], list[tuple[str, str, float]], dict[str, int]]: ...
    def put(self, message: StoredMessage, fresh: bool = False) -> None: ...
    def delete(self, message: StoredMessage) -> None: ...
    def put_session_state(self, queue: str, session_id: str, state: bytes | None) -> None: ...
    def put_dedup(self, queue: str, message_id: str, expires_at: float) -> None: ...
    def put_next_seq(self, queue: str, next_seq: int) -> None: ...
    def prune_dedup(self, now: float) -> None: ...
    def pending(self) -> bool: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class MemoryJournal:
    """Keeps nothing: the in-memory mode."""

    def load(self):
        return [], {}, [], {}

    def put(self, message, fresh=False): pass
    def delete(self, message): pass
    def put_session_state(self, queue, session_id, state): pass
    def put_dedup(self, queue, message_id, expires_at): pass
    def put_next_seq(self, queue, next_seq): pass
    def prune_dedup(self, now): pass
    def pending(self): return False
    def commit(self): pass
    def close(self): pass


@dataclass(eq=False)
class Consumer:
    """A receiver attached to an entity (a queue, its dead-letter queue, or one session of a queue)."""

    entity: "Entity"
    receive_and_delete: bool = False
    session: "Session | None" = None
    name: str = ""
    locked: dict[bytes, StoredMessage] = field(default_factory=dict)


@dataclass(eq=False)
class Session:
    id: str
    ready: list[int] = field(default_factory=list)  # heap of sequence numbers
    count: int = 0  # messages of this session in the queue, any state
    state: bytes | None = None
    holder: Consumer | None = None
    locked_until: float = 0.0


class Entity:
    """A queue or its dead-letter sub-queue: the messages, their order, and who holds them."""

    def __init__(self, config: QueueConfig, dead_letter: bool) -> None:
        self.config = config
        self.dead_letter = dead_letter
        self.path = config.name + ("/$DeadLetterQueue" if dead_letter else "")
        self.sessionful = config.requires_session and not dead_letter
        self.messages: dict[int, StoredMessage] = {}
        self.ready: list[int] = []  # heap of sequence numbers (sessionless entities)
        self.sessions: dict[str, Session] = {}
        self.consumers: list[Consumer] = []
        self.bytes = 0

    def counts(self) -> dict[str, int]:
        active = deferred = scheduled = locked = 0
        for m in self.messages.values():
            if m.state is State.DEFERRED:
                deferred += 1
            elif m.state is State.SCHEDULED:
                scheduled += 1
            else:
                active += 1
            if m.lock_token is not None:
                locked += 1
        return {"active": active, "deferred": deferred, "scheduled": scheduled, "locked": locked}


class Store:
    """All queues of one broker. ``now`` is epoch seconds, passed in by the caller."""

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
        self.dirty: set[Entity] = set()  # entities that gained available messages since the last drain
        self.lost_sessions: list[tuple[Consumer, Session]] = []  # session locks that expired since the last drain
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
        for (queue, sid), state in session_states.items():
            if queue in self.queues:
                self._session(self.queues[queue][0], sid).state = state
        for queue, mid, expires in dedup_rows:
            if queue in self.dedup:
                self.dedup[queue][mid] = expires

    # ----- internal bookkeeping -----------------------------------------------------------------
    def _session(self, entity: Entity, sid: str) -> Session:
        session = entity.sessions.get(sid)
        if session is None:
            session = entity.sessions[sid] = Session(sid)
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
        self.dirty.add(entity)

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

    def cancel_scheduled(self, path: str, seqs: Iterable[int]) -> None:
        entity = self.entity(path)
        for seq in seqs:
            m = entity.messages.get(seq)
            if m is None or m.state is not State.SCHEDULED:
                raise MessageNotFound(f"No scheduled message with sequence number {seq} in '{entity.path}'.")
            self._remove(entity, m)

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
                    self._dead_letter(m, "MaxDeliveryCountExceeded", "Message could not be consumed after the maximum number of delivery attempts.", now)
                else:
                    m.delivery_count += 1
                    self.journal.put(m)
                    self._make_ready(entity, m)
        session.holder = None
        session.locked_until = 0.0
        if session.ready:
            self.dirty.add(entity)
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
                self._dead_letter(m, "MaxDeliveryCountExceeded",
                                  "Message could not be consumed after the maximum number of delivery attempts.", now)
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

    def renew_locks(self, tokens: Iterable[bytes], now: float) -> list[float]:
        result = []
        for token in tokens:
            m = self.locks.get(token)
            if m is None or m.removed or m.locked_until <= now:
                raise MessageLockLost("The lock supplied is invalid or expired; the message must be received again.")
            if m.holder is not None and m.holder.session is not None:
                raise InvalidRequest("Messages received from a session are locked by the session: renew the session lock.")
            m.locked_until = now + self._entity_of(m).config.lock_duration
            heapq.heappush(self._lock_expiry, (m.locked_until, token))
            result.append(m.locked_until)
        return result

    def renew_session(self, consumer: Consumer | None, path: str, session_id: str, now: float) -> float:
        entity = self.entity(path)
        session = entity.sessions.get(session_id)
        if session is None or session.holder is None or session.locked_until <= now or (
            consumer is not None and session.holder is not consumer
        ):
            raise SessionLockLost(f"The session lock of '{session_id}' was lost. Accept the session again to continue.")
        session.locked_until = now + entity.config.lock_duration
        heapq.heappush(self._session_expiry, (session.locked_until, next(self._tiebreak), session))
        for m in session.holder.locked.values():
            m.locked_until = session.locked_until
        return session.locked_until

    def _held_session(self, path: str, session_id: str, now: float) -> tuple[Entity, Session]:
        entity = self.entity(path)
        session = entity.sessions.get(session_id)
        if session is None or session.holder is None or session.locked_until <= now:
            raise SessionLockLost(f"The session lock of '{session_id}' was lost. Accept the session again to continue.")
        return entity, session

    def get_session_state(self, path: str, session_id: str, now: float) -> bytes | None:
        return self._held_session(path, session_id, now)[1].state

    def set_session_state(self, path: str, session_id: str, state: bytes | None, now: float) -> None:
        entity, session = self._held_session(path, session_id, now)
        session.state = state
        self.journal.put_session_state(entity.config.name, session_id, state)

    def list_sessions(self, path: str) -> list[str]:
        entity = self.entity(path)
        return [s.id for s in entity.sessions.values() if s.count > 0 or s.state is not None]

    def receive_deferred(self, path: str, seqs: Iterable[int], now: float, consumer: Consumer | None,
                         receive_and_delete: bool = False, session_id: str | None = None) -> list[StoredMessage]:
        entity = self.entity(path)
        found = []
        for seq in seqs:
            m = entity.messages.get(seq)
            if m is None or m.state is not State.DEFERRED or (session_id is not None and m.session_id != session_id):
                raise MessageNotFound(f"No deferred message with sequence number {seq} in '{entity.path}'.")
            found.append(m)
        out = []
        for m in found:
            if receive_and_delete:
                self._remove(entity, m)
            else:
                if m.lock_token is not None:
                    self._unlock(m)
                token = uuid.uuid4().bytes
                m.lock_token = token
                m.holder = consumer
                m.locked_until = now + entity.config.lock_duration
                if consumer is not None and consumer.session is not None:
                    m.locked_until = consumer.session.locked_until
                else:
                    heapq.heappush(self._lock_expiry, (m.locked_until, token))
                self.locks[token] = m
                if consumer is not None:
                    consumer.locked[token] = m
            out.append(m)
        return out

    def settle_deferred_aware(self, token: bytes, outcome: Outcome, now: float, **kw) -> StoredMessage:
        """Settle via the management node: a deferred message stays deferred when abandoned."""
        m = self.locks.get(token)
        if m is not None and m.state is State.DEFERRED and outcome is Outcome.ABANDON:
            self._unlock(m)
            m.delivery_count += 1
            self.journal.put(m)
            return m
        if m is not None and m.state is State.DEFERRED and outcome is Outcome.DEFER:
            self._unlock(m)
            return m
        if m is not None and m.state is State.DEFERRED:
            m.state = State.ACTIVE
            try:
                return self.settle(token, outcome, now, **kw)
            finally:
                if not m.removed and not m.dead_lettered:
                    m.state = State.DEFERRED
        return self.settle(token, outcome, now, **kw)

    def peek(self, path: str, from_seq: int, count: int, session_id: str | None = None) -> list[StoredMessage]:
        entity = self.entity(path)
        seqs = sorted(s for s in entity.messages if s >= from_seq)
        out = []
        for seq in seqs:
            m = entity.messages[seq]
            if session_id is not None and m.session_id != session_id:
                continue
            out.append(m)
            if len(out) >= count:
                break
        return out

    # ----- time ---------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Expire locks, session locks and messages; activate scheduled messages that are due."""
        while self._lock_expiry and self._lock_expiry[0][0] <= now:
            until, token = heapq.heappop(self._lock_expiry)
            m = self.locks.get(token)
            if m is None or m.locked_until > now or (m.holder is not None and m.holder.session is not None):
                continue
            entity = self._entity_of(m)
            self._unlock(m)
            m.delivery_count += 1
            if m.state is State.DEFERRED:
                self.journal.put(m)
            elif m.delivery_count >= entity.config.max_delivery_count and not entity.dead_letter:
                self._dead_letter(m, "MaxDeliveryCountExceeded",
                                  "Message could not be consumed after the maximum number of delivery attempts.", now)
            else:
                self.journal.put(m)
                self._make_ready(entity, m)
        while self._session_expiry and self._session_expiry[0][0] <= now:
            until, _, session = heapq.heappop(self._session_expiry)
            holder = session.holder
            if holder is None or session.locked_until > now:
                continue
            self._release_session(holder.entity, session, holder, now)
            if holder in holder.entity.consumers:
                holder.entity.consumers.remove(holder)
            self.lost_sessions.append((holder, session))
        while self._scheduled and self._scheduled[0][0] <= now:
            _, queue, seq = heapq.heappop(self._scheduled)
            main = self.queues[queue][0]
            m = main.messages.get(seq)
            if m is None or m.state is not State.SCHEDULED:
                continue
            m.state = State.ACTIVE
            m.enqueued_at = now
            self.journal.put(m)
            self._make_ready(main, m)
        while self._ttl and self._ttl[0][0] <= now:
            _, queue, dead, seq = heapq.heappop(self._ttl)
            entity = self.queues[queue][1 if dead else 0]
            m = entity.messages.get(seq)
            if m is None or m.lock_token is not None or m.state is State.SCHEDULED or m.expires_at > now:
                if m is not None and m.lock_token is not None and m.expires_at <= now:
                    # Expired while locked: look again once the lock is gone.
                    heapq.heappush(self._ttl, (now + 1.0, queue, dead, seq))
                    break
                continue
            if dead:
                continue  # dead-lettered messages do not expire again
            self._expired(entity, m, now)
        for queue, table in self.dedup.items():
            if len(table) > 10_000:
                for mid in [k for k, v in table.items() if v <= now]:
                    del table[mid]
        self.journal.prune_dedup(now)

    def next_deadline(self) -> float | None:
        heads = [h[0][0] for h in (self._lock_expiry, self._scheduled, self._ttl, self._session_expiry) if h]
        return min(heads) if heads else None

    # ----- visibility ---------------------------------------------------------------------------
    def stats(self) -> dict[str, dict]:
        out = {}
        for name, (main, dlq) in self.queues.items():
            counts = main.counts()
            out[name] = {
                "active": counts["active"],
                "deadLettered": len(dlq.messages),
                "scheduled": counts["scheduled"],
                "deferred": counts["deferred"],
                "locked": counts["locked"] + dlq.counts()["locked"],
                "sizeBytes": main.bytes + dlq.bytes,
                "requiresSession": main.sessionful,
                "sessions": [
                    {"id": s.id, "messages": s.count, "locked": s.holder is not None,
                     "hasState": s.state is not None}
                    for s in main.sessions.values() if s.count > 0 or s.holder is not None
                ],
                "receivers": len(main.consumers) + len(dlq.consumers),
            }
        return out
