"""The broker's queue model: messages, sessions, consumers and entities (a queue or its dead-letter queue).

Plain data; the rules that change it live in ``store``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from .config import QueueConfig

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
    state_updated_at: float = 0.0  # epoch seconds of the last set_session_state
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

