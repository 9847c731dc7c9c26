"""The pure core of the WebSocket service: no I/O, standard library only.

Frames are parsed and validated here, each socket's subscriptions remember what was already sent (so a
status is never pushed twice and a terminal status ends the subscription), and the bounded send queue
decides when a client is too slow to keep.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from service_platform.correlation_ids import is_correlation_id

T = TypeVar("T")

TERMINAL_STATUSES = frozenset({"Completed", "Rejected", "Failed"})
KNOWN_STATUSES = frozenset({"Accepted"}) | TERMINAL_STATUSES
MAX_FRAME_BYTES = 4096


class InvalidEvent(ValueError):
    """A status event (from the queue, a peer or the status API) does not have the contract's shape."""


class FrameError(ValueError):
    """A client frame is not acceptable; ``str()`` is the message sent back in an error frame."""


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidEvent(f"'{key}' must be a string or null")
    return value


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One order's status at a point in time, as pushed to clients."""

    correlation_id: str
    status: str
    order_id: int | None = None
    total: str | None = None
    currency: str | None = None
    reason: str | None = None
    updated_at: str | None = None
    attempt: int = 1  # a replay of the order's dead letter starts the next attempt
    #: The W3C trace context of the event's receipt, so that its pushes join the order's trace; travels with
    #: forwards between instances, never to clients.
    traceparent: str | None = field(default=None, compare=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_mapping(cls, data: object) -> StatusEvent:
        """Validate a decoded status: the status API's answer and the ``order-status`` event share one shape."""
        if not isinstance(data, Mapping):
            raise InvalidEvent("a status event must be a JSON object")
        correlation_id = data.get("correlationId")
        if not is_correlation_id(correlation_id):
            raise InvalidEvent("'correlationId' must be a UUID")
        status = data.get("status")
        if status not in KNOWN_STATUSES:
            raise InvalidEvent(f"'status' must be one of {sorted(KNOWN_STATUSES)}, not {status!r}")
        order_id = data.get("orderId")
        if order_id is not None and (not isinstance(order_id, int) or isinstance(order_id, bool)):
            raise InvalidEvent("'orderId' must be an integer or null")
        attempt = data.get("attempt", 1)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise InvalidEvent("'attempt' must be a whole number from 1")
        return cls(
            correlation_id=correlation_id,  # type: ignore[arg-type]
            status=status,  # type: ignore[arg-type]
            order_id=order_id,
            total=_optional_str(data, "total"),
            currency=_optional_str(data, "currency"),
            reason=_optional_str(data, "reason"),
            updated_at=_optional_str(data, "updatedAt"),
            attempt=attempt,
            traceparent=_optional_str(data, "traceparent"),
        )

    @classmethod
    def from_json(cls, body: bytes | str) -> StatusEvent:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEvent(f"the status event is not JSON: {exc}") from None
        return cls.from_mapping(data)

    def to_mapping(self) -> dict[str, Any]:
        """The status shape (``order-status`` body, status answer, forwards between instances)."""
        mapping: dict[str, Any] = {
            "correlationId": self.correlation_id, "status": self.status, "orderId": self.order_id,
            "total": self.total, "currency": self.currency, "reason": self.reason, "updatedAt": self.updated_at,
            "attempt": self.attempt,
        }
        if self.traceparent:
            mapping["traceparent"] = self.traceparent
        return mapping

    def to_frame(self) -> str:
        """The server frame for this event; the WebSocket contract names the time ``at``."""
        return json.dumps({
            "type": "status", "correlationId": self.correlation_id, "status": self.status, "orderId": self.order_id,
            "total": self.total, "currency": self.currency, "reason": self.reason, "at": self.updated_at,
            "attempt": self.attempt,
        }, separators=(",", ":"))


def error_frame(message: str) -> str:
    return json.dumps({"type": "error", "message": message}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Subscribe:
    correlation_id: str
    token: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    correlation_id: str


ClientCommand = Subscribe | Unsubscribe


def parse_client_frame(frame: str | bytes) -> ClientCommand:
    """Turn a client frame into a command, or raise ``FrameError`` saying what is wrong with it."""
    if isinstance(frame, bytes):
        raise FrameError("binary frames are not supported: send JSON text frames")
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameError(f"frame is larger than {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(frame)
    except ValueError:
        raise FrameError("frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise FrameError('frame must be a JSON object such as {"action": "subscribe", ...}')
    action = data.get("action")
    correlation_id = data.get("correlationId")
    if action not in ("subscribe", "unsubscribe"):
        raise FrameError("'action' must be 'subscribe' or 'unsubscribe'")
    if not is_correlation_id(correlation_id):
        raise FrameError("'correlationId' must be a UUID")
    if action == "unsubscribe":
        return Unsubscribe(correlation_id)  # type: ignore[arg-type]
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise FrameError("'token' is required to subscribe: use the notifyToken returned with the order")
    return Subscribe(correlation_id, token)  # type: ignore[arg-type]


class SocketSubscriptions:
    """The orders one socket follows and the last status it was sent for each.

    ``admit`` is the single gate for outgoing events: it drops events for orders the socket does not
    follow, repeats of a status already sent and events of an attempt older than one already sent (a
    replay starts a new attempt), and ends the subscription after a terminal status, so the current
    status read on subscribe and the same status arriving from the queue reach the client once.
    """

    __slots__ = ("_last", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._last: dict[str, tuple[int, str] | None] = {}

    def __contains__(self, correlation_id: object) -> bool:
        return correlation_id in self._last

    def __len__(self) -> int:
        return len(self._last)

    @property
    def ids(self) -> list[str]:
        return list(self._last)

    def add(self, correlation_id: str) -> bool:
        """Follow an order; False if already followed. Raises ``FrameError`` past the limit."""
        if correlation_id in self._last:
            return False
        if len(self._last) >= self.limit:
            raise FrameError(f"a socket may follow at most {self.limit} orders: unsubscribe from finished ones")
        self._last[correlation_id] = None
        return True

    def remove(self, correlation_id: str) -> bool:
        return self._last.pop(correlation_id, 0) != 0

    def admit(self, event: StatusEvent) -> bool:
        """Whether ``event`` must be sent; records it (and ends the subscription when terminal)."""
        if event.correlation_id not in self._last:
            return False
        last = self._last[event.correlation_id]
        if last is not None and (event.attempt < last[0] or (event.attempt, event.status) == last):
            return False
        if event.terminal:
            del self._last[event.correlation_id]
        else:
            self._last[event.correlation_id] = (event.attempt, event.status)
        return True


class Outbox(Generic[T]):
    """A bounded queue of frames waiting to be written to one socket.

    A client that does not read makes the transport stop accepting writes; frames then pile up here. Past
    ``limit`` frames the client is declared overflowed and must be closed, so one slow reader costs at
    most ``limit`` frames of memory and never delays anyone else.
    """

    __slots__ = ("_frames", "limit", "overflowed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._frames: deque[T] = deque()
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, frame: T) -> bool:
        """Queue ``frame``; False (and ``overflowed`` set) when the bound is exceeded or was before."""
        if self.overflowed:
            return False
        if len(self._frames) >= self.limit:
            self.overflowed = True
            self._frames.clear()
            return False
        self._frames.append(frame)
        return True

    def take(self) -> T | None:
        return self._frames.popleft() if self._frames else None


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """Where one instance that holds subscribers of an order can be reached, and until when."""

    instance_id: str
    internal_url: str
    until: float

    def encode(self) -> str:
        return json.dumps({"url": self.internal_url, "until": self.until}, separators=(",", ":"))

    @classmethod
    def decode(cls, instance_id: str, raw: str) -> RegistryEntry | None:
        try:
            data = json.loads(raw)
            return cls(instance_id, str(data["url"]), float(data["until"]))
        except (ValueError, KeyError, TypeError):
            return None


def forward_targets(entries: Iterable[RegistryEntry], self_id: str, now: float) -> list[RegistryEntry]:
    """The other live instances an event must be forwarded to (stale and own entries left out)."""
    return [e for e in entries if e.instance_id != self_id and e.until > now]


class Disposition:
    """What to do with a message taken from the status queue once it has been routed."""

    COMPLETE = "complete"
    ABANDON = "abandon"
    RETRY_LATER = "retry-later"  # keep the message locked and route it again in a moment


def disposition_after_registry_failure(delivered_locally: bool, delivery_count: int, max_attempts: int) -> str:
    """The registry could not be read, so other instances' subscribers are unknown.

    Giving the message back lets another instance (maybe the one holding the subscriber) try it; after a
    few attempts it is dropped, because a subscriber that missed it reads the current status on reconnect.
    """
    if delivered_locally or delivery_count + 1 >= max_attempts:
        return Disposition.COMPLETE
    return Disposition.ABANDON
