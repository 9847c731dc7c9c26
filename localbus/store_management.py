"""The store's operations that only the ``$management`` node asks for: lock and session renewal, session
state, deferred messages by sequence number, peek, cancelling scheduled messages, and the stats snapshot.

A mixin of ``store.Store``, kept apart so that each file holds one concern; it works on the store's state.
"""

from __future__ import annotations

import heapq
import uuid
from typing import Iterable

from .entities import Consumer, Entity, Outcome, Session, State, StoredMessage
from .errors import InvalidRequest, MessageLockLost, MessageNotFound, SessionLockLost


class ManagementOperations:
    def cancel_scheduled(self, path: str, seqs: Iterable[int]) -> None:
        entity = self.entity(path)
        for seq in seqs:
            m = entity.messages.get(seq)
            if m is None or m.state is not State.SCHEDULED:
                raise MessageNotFound(f"No scheduled message with sequence number {seq} in '{entity.path}'.")
            self._remove(entity, m)

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
        session.state_updated_at = now
        self.journal.put_session_state(entity.config.name, session_id, state, now)

    def list_sessions(self, path: str, state_updated_after: float | None = None) -> list[str]:
        """Sessions with messages or state; with ``state_updated_after``, those whose state was set later."""
        entity = self.entity(path)
        if state_updated_after is not None:
            return [s.id for s in entity.sessions.values() if s.state_updated_at > state_updated_after]
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

