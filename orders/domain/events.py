"""Events: what happened to an order, published on the ``order-status`` queue."""

from __future__ import annotations

from dataclasses import dataclass

from orders.domain.model import OrderOutcome, OrderStatus


@dataclass(frozen=True, slots=True)
class OrderStatusChanged:
    """An order reached a final status (``Completed``, ``Rejected`` or ``Failed``), or a replay made it
    ``Accepted`` again: its outcome, as stored.

    Re-emitted unchanged on every redelivery of the same order; ``deduplication_key`` lets the broker's
    duplicate detection and the WebSocket service drop the repeats.
    """

    outcome: OrderOutcome

    @property
    def correlation_id(self) -> str:
        return self.outcome.correlation_id

    @property
    def status(self) -> OrderStatus:
        return self.outcome.status

    @property
    def deduplication_key(self) -> str:
        key = f"{self.outcome.correlation_id}:{self.outcome.status.value}"
        return key if self.outcome.attempt == 1 else f"{key}:{self.outcome.attempt}"
