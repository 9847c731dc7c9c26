"""Dead letters kept for operators: what the broker gave up on, and what an operator did about it.

A dead letter is kept (stored in SQL) before it leaves the dead-letter queue. An operator may then replay
it (its order gets a new attempt), repair it (replay with an edited body) or discard it (keep the record,
never retry). Every one of those is an action with who, when, what and why.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from orders.domain.model import OrderLine


class DeadLetterState(enum.StrEnum):
    KEPT = "Kept"  # stored, waiting for an operator
    REPLAYED = "Replayed"  # its order was given a new attempt (with the body as kept, or repaired)
    DISCARDED = "Discarded"  # an operator decided it is never to be retried


class ActionKind(enum.StrEnum):
    REPLAY = "replay"
    REPAIR = "repair"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message as the dead-letter queue delivered it, and its handling so far.

    ``message_id`` with ``sequence_number`` names the message: a redelivery of the same dead letter has
    both, a replayed attempt that is dead-lettered again has another message id.
    """

    message_id: str
    sequence_number: int | None
    body: bytes
    reason: str | None
    description: str | None
    delivery_count: int
    enqueued_at: datetime | None
    dead_lettered_at: datetime
    correlation_id: str | None = None  # the order it belongs to, when one can be named
    customer_id: str | None = None  # the session it came from: the customer, when known
    attempt: int = 1  # the order's attempt the message carried
    message_properties: Mapping[str, object] = field(default_factory=dict)
    application_properties: Mapping[str, object] = field(default_factory=dict)
    id: int | None = None  # the store's id, once kept
    state: DeadLetterState = DeadLetterState.KEPT
    replay_attempt: int | None = None  # the attempt a replay or repair gave its order
    replayed_body: bytes | None = None  # the body that attempt was sent with (the repaired one, or ``body``)


@dataclass(frozen=True, slots=True)
class DeadLetterAction:
    """An operator's action on a dead letter: the audit record."""

    dead_letter_id: int
    kind: ActionKind
    actor: str
    why: str
    at: datetime
    attempt: int | None = None  # the attempt a replay or repair started
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters to list: every criterion given must hold; ``after_id`` pages through them."""

    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    customer_id: str | None = None
    correlation_id: str | None = None
    state: DeadLetterState | None = None
    after_id: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class RepairedOrder:
    """The corrected order an operator gives for a dead letter, validated as intake validates a body."""

    customer_id: str
    currency: str
    items: tuple[OrderLine, ...]
