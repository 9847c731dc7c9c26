"""The store's clock-driven work: lock and session-lock expiry, scheduled messages, time to live.

A mixin of ``store.Store``, kept apart so that each file holds one concern; it works on the store's state.
"""

from __future__ import annotations

import heapq

from .entities import State

DEAD_LETTER_AFTER_MAX_DELIVERIES = ("MaxDeliveryCountExceeded",
                                    "Message could not be consumed after the maximum number of delivery attempts.")


class Timers:
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
                self._dead_letter(m, *DEAD_LETTER_AFTER_MAX_DELIVERIES, now)
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
            self._lost_sessions.append((holder, session))
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

