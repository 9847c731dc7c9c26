"""Ports: what the core needs from the outside world. Adapters in ``orders.adapters`` (and the messaging and
Redis adapters of the function app) implement them; ``tests/fakes.py`` holds in-memory stand-ins.

Failure contract for every adapter: raise ``orders.domain.errors.TransientError`` when the dependency cannot
be reached or is busy (the caller retries or answers 503); let programming errors propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from orders.domain.dead_letters import DeadLetter, DeadLetterAction, DeadLetterFilter, DeadLetterState
from orders.domain.errors import TooManyOrders
from orders.domain.events import OrderStatusChanged
from orders.domain.model import AcceptedRecord, OrderMessage, OrderOutcome, OrderRecord, Product


class OrderStore(Protocol):
    """Orders and the catalog inside one unit of work (one database transaction)."""

    def get(self, correlation_id: str) -> OrderOutcome | None:
        """The stored outcome for ``correlation_id``, or ``None`` if the order was never processed."""

    def products(self, skus: Iterable[str]) -> dict[str, Product]:
        """The catalog entries for those SKUs that exist, keyed by SKU."""

    def list_products(self) -> list[Product]:
        """The whole catalog, ordered by SKU."""

    def reserve_stock(self, sku: str, quantity: int) -> Product | None:
        """Take ``quantity`` units of ``sku`` if that many are in stock, atomically, and return the product
        (its ``stock`` what is left); ``None`` if the SKU is unknown or short, with nothing taken.

        Race-free: two transactions can never both take the last units.
        """

    def add(self, record: OrderRecord) -> int:
        """Store an order (and its lines) and return the ``OrderId`` the database generated.

        Raises ``DuplicateOrder`` if an order with the same correlationId exists; the transaction must then be
        rolled back.
        """

    def settle(self, record: OrderRecord) -> int | None:
        """Give an ``Accepted`` order (one a replay reopened) its outcome: status, total, reason and lines.

        Only if the stored order is ``Accepted`` at ``record.attempt``; returns its ``OrderId``, or None when
        another delivery settled it first (roll back and re-read).
        """

    def reopen(self, correlation_id: str, failed_attempt: int, at: datetime) -> bool:
        """Turn a ``Failed`` order at ``failed_attempt`` into ``Accepted`` at the next attempt; False if it
        is not (any more) in that state."""


class DeadLetterStore(Protocol):
    """Kept dead letters and the audit of what operators did with them, inside one unit of work."""

    def keep(self, dead_letter: DeadLetter) -> bool:
        """Store it; False (and nothing changed) when this message (id and sequence number) is kept already."""

    def get(self, dead_letter_id: int, *, lock: bool = False) -> DeadLetter | None:
        """``lock``: hold the row until the transaction ends, so a concurrent action on it waits and then
        sees what this one did."""

    def find(self, criteria: DeadLetterFilter) -> list[DeadLetter]:
        """Those matching ``criteria``, by id, at most ``criteria.limit`` after ``criteria.after_id``."""

    def mark(self, dead_letter_id: int, expected: DeadLetterState, new: DeadLetterState, *,
             replay_attempt: int | None = None, replayed_body: bytes | None = None) -> bool:
        """Move it from ``expected`` to ``new``; False when it is not in ``expected`` (another operator won)."""

    def record(self, action: DeadLetterAction) -> None: ...

    def actions(self, dead_letter_id: int) -> list[DeadLetterAction]: ...


class UnitOfWork(Protocol):
    """One transaction: ``with uow: ...; uow.commit()``. Leaving the block without ``commit`` rolls back.

    After ``rollback()`` the same unit of work may be used again; it starts a new transaction.
    """

    orders: OrderStore
    dead_letters: DeadLetterStore

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    """Makes a fresh unit of work per call, so concurrent handlers never share a transaction.

    ``read_only=True`` promises no writes (SQLite then does not take the write lock up front).
    """

    def __call__(self, *, read_only: bool = False) -> UnitOfWork: ...


class StatusEventPublisher(Protocol):
    """Sends status events to the ``order-status`` queue (synchronous: called from the processing path)."""

    def publish(self, event: OrderStatusChanged) -> None:
        """Return once the broker has accepted the event; raise ``TransientError`` if it cannot."""


class OrderMessagePublisher(Protocol):
    """Sends accepted orders to the ``orders`` queue (asynchronous: called from the HTTP intake)."""

    async def publish(self, message: OrderMessage) -> None:
        """Return only once the broker has acknowledged the message; raise ``TransientError`` if it cannot."""


class AcceptedRecordStore(Protocol):
    """Short-lived ``Accepted`` records (Redis with a TTL), so a status read before processing finds the order."""

    async def record_accepted(self, record: AcceptedRecord, ttl_seconds: int) -> None: ...

    async def get_accepted(self, correlation_id: str) -> AcceptedRecord | None: ...

    async def claim_idempotency_key(self, correlation_id: str, fingerprint: str, ttl_seconds: int) -> str | None:
        """Bind the order of an Idempotency-Key (its correlationId) to a request fingerprint, atomically.

        Returns None when this call bound it or it was bound to the same fingerprint, else the fingerprint
        it is bound to. Raises when the store cannot answer (the caller then accepts without the check).
        """


class SubmissionLimiter(Protocol):
    """Per-customer limits on orders in flight (accepted, not yet terminal) and on submissions per minute,
    kept as short-lived shared state across intake replicas (Redis with TTLs)."""

    async def admit(self, customer_id: str, correlation_id: str) -> TooManyOrders | None:
        """Count this submission and return None, or return why it is refused (nothing counted).

        A correlationId already counted is admitted again without counting (a retried request). Raises when
        the store cannot answer; the caller then admits the order (fail open).
        """

    def release(self, customer_id: str, correlation_id: str) -> None:
        """The order has its outcome: it no longer counts as in flight (synchronous: the processing path)."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware in UTC."""
