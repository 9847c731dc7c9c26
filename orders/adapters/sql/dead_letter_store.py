"""``SqlDeadLetterStore``: the ``DeadLetterStore`` port on SQLAlchemy Core, inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import Connection, Row, Select, and_, bindparam, insert, select, update

from orders.adapters.sql.schema import dead_letter_actions, dead_letters
from orders.domain.dead_letters import ActionKind, DeadLetter, DeadLetterAction, DeadLetterFilter, DeadLetterState

NO_SEQUENCE_NUMBER = -1


def select_dead_letter(lock: bool) -> Select:  # type: ignore[type-arg]
    """One dead letter by id; ``lock`` holds its row until the transaction ends: FOR UPDATE on PostgreSQL,
    UPDLOCK on SQL Server (whose dialect ignores FOR UPDATE). SQLite writers are serialised anyway."""
    query = select(dead_letters).where(dead_letters.c.dead_letter_id == bindparam("dead_letter_id"))
    if lock:
        query = query.with_for_update().with_hint(dead_letters, "WITH (UPDLOCK, ROWLOCK)", "mssql")
    return query


class SqlDeadLetterStore:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def keep(self, dead_letter: DeadLetter) -> bool:
        # Looked up first rather than caught as a unique violation: on PostgreSQL a failed insert would abort
        # the whole transaction (which also marks the order Failed). Two deliveries racing past the lookup
        # make one of them fail on the unique key, and its redelivery then finds the row.
        sequence_number = NO_SEQUENCE_NUMBER if dead_letter.sequence_number is None else dead_letter.sequence_number
        existing = self._connection.execute(select(dead_letters.c.dead_letter_id).where(
            dead_letters.c.message_id == dead_letter.message_id,
            dead_letters.c.sequence_number == sequence_number)).first()
        if existing is not None:
            return False
        self._connection.execute(insert(dead_letters), {
            "message_id": dead_letter.message_id, "sequence_number": sequence_number,
            "correlation_id": dead_letter.correlation_id, "customer_id": dead_letter.customer_id,
            "attempt": dead_letter.attempt, "body": dead_letter.body,
            "message_properties": _json(dead_letter.message_properties),
            "application_properties": _json(dead_letter.application_properties),
            "reason": None if dead_letter.reason is None else dead_letter.reason[:256],
            "description": None if dead_letter.description is None else dead_letter.description[:4000],
            "delivery_count": dead_letter.delivery_count, "enqueued_at": dead_letter.enqueued_at,
            "dead_lettered_at": dead_letter.dead_lettered_at, "state": DeadLetterState.KEPT.value,
        })
        return True

    def get(self, dead_letter_id: int, *, lock: bool = False) -> DeadLetter | None:
        row = self._connection.execute(select_dead_letter(lock), {"dead_letter_id": dead_letter_id}).first()
        return None if row is None else _dead_letter(row)

    def find(self, criteria: DeadLetterFilter) -> list[DeadLetter]:
        conditions = [dead_letters.c.dead_letter_id > criteria.after_id]
        if criteria.reason is not None:
            conditions.append(dead_letters.c.reason == criteria.reason)
        if criteria.since is not None:
            conditions.append(dead_letters.c.dead_lettered_at >= criteria.since)
        if criteria.until is not None:
            conditions.append(dead_letters.c.dead_lettered_at < criteria.until)
        if criteria.customer_id is not None:
            conditions.append(dead_letters.c.customer_id == criteria.customer_id)
        if criteria.correlation_id is not None:
            conditions.append(dead_letters.c.correlation_id == criteria.correlation_id)
        if criteria.state is not None:
            conditions.append(dead_letters.c.state == criteria.state.value)
        rows = self._connection.execute(select(dead_letters).where(and_(*conditions))
                                        .order_by(dead_letters.c.dead_letter_id).limit(criteria.limit))
        return [_dead_letter(row) for row in rows]

    def mark(self, dead_letter_id: int, expected: DeadLetterState, new: DeadLetterState, *,
             replay_attempt: int | None = None, replayed_body: bytes | None = None) -> bool:
        result = self._connection.execute(
            update(dead_letters)
            .where(dead_letters.c.dead_letter_id == dead_letter_id, dead_letters.c.state == expected.value)
            .values(state=new.value, replay_attempt=replay_attempt, replayed_body=replayed_body))
        return result.rowcount == 1

    def record(self, action: DeadLetterAction) -> None:
        self._connection.execute(insert(dead_letter_actions), {
            "dead_letter_id": action.dead_letter_id, "kind": action.kind.value, "actor": action.actor[:256],
            "why": action.why[:1000], "at": action.at, "attempt": action.attempt,
            "correlation_id": action.correlation_id,
        })

    def actions(self, dead_letter_id: int) -> list[DeadLetterAction]:
        rows = self._connection.execute(
            select(dead_letter_actions).where(dead_letter_actions.c.dead_letter_id == dead_letter_id)
            .order_by(dead_letter_actions.c.action_id))
        return [DeadLetterAction(dead_letter_id=row.dead_letter_id, kind=ActionKind(row.kind), actor=row.actor,
                                 why=row.why, at=row.at, attempt=row.attempt, correlation_id=row.correlation_id)
                for row in rows]


def _json(properties: Mapping[str, object]) -> str:
    return json.dumps(dict(properties), default=str, separators=(",", ":"))


def _dead_letter(row: Row) -> DeadLetter:  # type: ignore[type-arg]
    return DeadLetter(
        id=row.dead_letter_id, message_id=row.message_id,
        sequence_number=None if row.sequence_number == NO_SEQUENCE_NUMBER else row.sequence_number,
        body=bytes(row.body), reason=row.reason, description=row.description, delivery_count=row.delivery_count,
        enqueued_at=row.enqueued_at, dead_lettered_at=row.dead_lettered_at, correlation_id=row.correlation_id,
        customer_id=row.customer_id, attempt=row.attempt, message_properties=json.loads(row.message_properties),
        application_properties=json.loads(row.application_properties), state=DeadLetterState(row.state),
        replay_attempt=row.replay_attempt,
        replayed_body=None if row.replayed_body is None else bytes(row.replayed_body))
