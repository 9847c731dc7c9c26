"""Events: what happened to an order, published on the ``order-status`` queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from orders.domain.model import OrderOutcome, OrderStatus, iso_utc, status_fields


@dataclass(frozen=True, slots=True)
class OrderStatusChanged:
    """An order reached a final status (``Completed``, ``Rejected`` or ``Failed``).

    Re-emitted unchanged on every redelivery of the same order; ``message_id`` lets the broker's duplicate
    detection and the WebSocket service drop the repeats.
    """

    correlation_id: str
    status: OrderStatus
    order_id: int | None
    total: Decimal | None
    currency: str | None
    reason: str | None
    at: datetime

    @classmethod
    def from_outcome(cls, outcome: OrderOutcome) -> OrderStatusChanged:
        return cls(
            correlation_id=outcome.correlation_id,
            status=outcome.status,
            order_id=outcome.order_id,
            total=outcome.total,
            currency=outcome.currency,
            reason=outcome.reason,
            at=outcome.updated_at,
        )

    @property
    def message_id(self) -> str:
        return f"{self.correlation_id}:{self.status.value}"

    def to_json_dict(self) -> dict[str, object]:
        return {**status_fields(self.correlation_id, self.status, self.order_id, self.total, self.currency,
                                self.reason),
                "at": iso_utc(self.at)}
