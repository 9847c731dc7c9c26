"""Commands: what a caller asks the order pipeline to do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from orders.domain.model import OrderLine


@dataclass(frozen=True, slots=True)
class SubmitOrder:
    """Accept an order from a client (already validated by ``orders.validation``)."""

    customer_id: str
    currency: str
    items: tuple[OrderLine, ...]
    idempotency_key: str | None = None
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessOrder:
    """Decide and store the outcome of an accepted order (one ``orders`` queue message)."""

    correlation_id: str
    customer_id: str
    currency: str
    items: tuple[OrderLine, ...]
    accepted_at: datetime
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class MarkOrderFailed:
    """Record that an accepted order can never be processed (its message was dead-lettered).

    ``customer_id`` and ``currency`` are known only when the dead-lettered body could still be read.
    """

    correlation_id: str
    reason: str
    customer_id: str | None = None
    currency: str | None = None
    attempt: int = 1
