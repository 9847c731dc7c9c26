"""Order intake model and the rules that decide an order's outcome.

Money is ``Decimal`` end to end; prices come from the catalog, never from the client.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

#: The only queue message body version this code writes and reads.
MESSAGE_SCHEMA_VERSION = 1

#: Reasons are stored and sent to clients; a runaway exception text must not grow rows without bound.
MAX_REASON_LENGTH = 1000

CENT = Decimal("0.01")


class OrderStatus(StrEnum):
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    REJECTED = "Rejected"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One requested line: a SKU and how many units."""

    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    unit_price: Decimal
    currency: str
    stock: int


@dataclass(frozen=True, slots=True)
class PricedLine:
    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT)


@dataclass(frozen=True, slots=True)
class PricedOrder:
    """An order whose every line exists in the catalog, priced in the catalog's currency."""

    currency: str
    lines: tuple[PricedLine, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00")).quantize(CENT)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an order cannot be fulfilled; ``reason`` is shown to the client and names the SKU at fault."""

    reason: str


def price_order(currency: str, lines: Iterable[OrderLine], catalog: Mapping[str, Product]) -> PricedOrder | Rejection:
    """Apply the catalog rules: every SKU exists, the currency is the catalog's, total = Σ price × quantity.

    Stock is not checked here: only the store can reserve it without a race (see ``reserve_stock``).
    """
    lines = tuple(lines)
    unknown = list(dict.fromkeys(line.sku for line in lines if line.sku not in catalog))
    if unknown:
        return Rejection(f"unknown SKU: {', '.join(unknown)}")
    for line in lines:
        product = catalog[line.sku]
        if product.currency != currency:
            return Rejection(
                f"currency {currency} does not match the catalog: {product.sku} is priced in {product.currency}")
    return PricedOrder(
        currency=currency,
        lines=tuple(PricedLine(line.sku, line.quantity, catalog[line.sku].unit_price) for line in lines),
    )


def merge_quantities(lines: Iterable[OrderLine]) -> list[tuple[str, int]]:
    """Total quantity per SKU, sorted by SKU.

    Reserving in one global order means two orders sharing SKUs lock their rows in the same order, so
    databases with row locks cannot deadlock on them.
    """
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return sorted(totals.items())


def out_of_stock(sku: str, quantity: int) -> Rejection:
    return Rejection(f"not enough stock for SKU {sku}: {quantity} requested")


def clip_reason(reason: str | None) -> str | None:
    if reason is None or len(reason) <= MAX_REASON_LENGTH:
        return reason
    return reason[: MAX_REASON_LENGTH - 1] + "…"


def request_fingerprint(customer_id: str, currency: str, items: Iterable[OrderLine]) -> str:
    """What makes two submissions the same order: customer, currency and the merged quantity per SKU (a
    repeated SKU or another line order is the same order). A hex digest, safe to keep outside the core."""
    lines = ",".join(f"{sku}={quantity}" for sku, quantity in merge_quantities(items))
    return hashlib.sha256(f"{customer_id}\n{currency}\n{lines}".encode()).hexdigest()


def correlation_id_for(customer_id: str, idempotency_key: str | None, secret: bytes) -> str:
    """The order's correlationId: stable for a customer's ``Idempotency-Key`` (so a retried request maps to
    the same order without any state at intake), random without one.

    The stable id is keyed with a server secret: without it nobody can compute another customer's id (and
    so its status URL) from a guessable key.
    """
    if idempotency_key is None:
        return str(uuid.uuid4())
    digest = hmac.new(secret, f"{customer_id}\n{idempotency_key}".encode(), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def order_size_violations(lines: Iterable[OrderLine], *, max_lines: int, max_units: int) -> list[dict[str, str]]:
    """The size limits an order breaks, as ``errors`` entries; a repeated SKU counts once (merged)."""
    merged = merge_quantities(lines)
    violations = []
    if len(merged) > max_lines:
        violations.append({"field": "items", "detail": f"has {len(merged)} different SKUs; at most {max_lines} "
                                                       "are accepted per order (split it into several orders)"})
    units = sum(quantity for _, quantity in merged)
    if units > max_units:
        violations.append({"field": "items", "detail": f"adds up to {units} units; at most {max_units} are "
                                                       "accepted per order (split it into several orders)"})
    return violations


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """What a client may know about one order: its status answer, its status event and WebSocket frame.

    ``order_id`` is the database's id and is set only for ``Completed`` orders; ``total`` only when the order
    was priced.
    """

    correlation_id: str
    status: OrderStatus
    order_id: int | None
    total: Decimal | None
    currency: str | None
    reason: str | None
    updated_at: datetime
    #: Whose order it is, for authorisation; never part of what the client is shown.
    customer_id: str | None = None
    #: 1 for the order as placed; each replay of its dead letter by an operator is one more attempt.
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An outcome ready to be stored: one row in ``orders`` plus, for a completed order, its lines."""

    correlation_id: str
    customer_id: str | None
    status: OrderStatus
    currency: str | None
    total: Decimal | None
    reason: str | None
    at: datetime
    lines: tuple[PricedLine, ...] = ()
    attempt: int = 1

    def outcome(self, order_id: int) -> OrderOutcome:
        return OrderOutcome(
            correlation_id=self.correlation_id,
            status=self.status,
            order_id=order_id if self.status is OrderStatus.COMPLETED else None,
            total=self.total,
            currency=self.currency,
            reason=self.reason,
            updated_at=self.at,
            customer_id=self.customer_id,
            attempt=self.attempt,
        )


@dataclass(frozen=True, slots=True)
class AcceptedRecord:
    """The short-lived proof that intake accepted an order, kept until processing answers in SQL."""

    correlation_id: str
    customer_id: str
    currency: str
    accepted_at: datetime

    def outcome(self) -> OrderOutcome:
        return OrderOutcome(
            correlation_id=self.correlation_id,
            status=OrderStatus.ACCEPTED,
            order_id=None,
            total=None,
            currency=self.currency or None,
            reason=None,
            updated_at=self.accepted_at,
            customer_id=self.customer_id,
        )


@dataclass(frozen=True, slots=True)
class OrderMessage:
    """The ``orders`` queue message (schema version 1, see docs/contracts.md)."""

    correlation_id: str
    customer_id: str
    currency: str
    items: tuple[OrderLine, ...]
    accepted_at: datetime
    traceparent: str | None = field(default=None, compare=False)
    #: 1 as placed; a replay sends the order again as the next attempt (see ``orders.domain.dead_letters``).
    attempt: int = 1

    @property
    def deduplication_key(self) -> str:
        """Sends of the same attempt share it, so the queue keeps one copy: the correlationId (with the
        attempt number from the second attempt on, so a replay is not taken for a repeat of the first)."""
        return self.correlation_id if self.attempt == 1 else f"{self.correlation_id}:{self.attempt}"

    @property
    def ordering_key(self) -> str:
        """Orders with the same key are processed one at a time, in order: one customer's orders."""
        return self.customer_id
