"""The JSON shapes of the order contracts (docs/contracts.md), in one place.

The ``orders`` queue message body, and the status shape that the status answer and the status event
share (the WebSocket frame is built from it by the WebSocket service). The business core knows none of
them: adapters and the function app's responses call these.
"""

from __future__ import annotations

from datetime import UTC, datetime

from orders.domain.model import MESSAGE_SCHEMA_VERSION, OrderMessage, OrderOutcome, Product


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, millisecond precision."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_message_json(message: OrderMessage) -> dict[str, object]:
    """The body of an ``orders`` queue message (schema version 1)."""
    return {
        "schemaVersion": MESSAGE_SCHEMA_VERSION,
        "correlationId": message.correlation_id,
        "customerId": message.customer_id,
        "currency": message.currency,
        "items": [{"sku": line.sku, "quantity": line.quantity} for line in message.items],
        "acceptedAt": iso_utc(message.accepted_at),
    }


def status_json(outcome: OrderOutcome) -> dict[str, object]:
    """An order's status: the answer of ``GET /api/orders/{id}`` and the ``order-status`` event body."""
    return {
        "correlationId": outcome.correlation_id,
        "status": outcome.status.value,
        "orderId": outcome.order_id,
        "total": None if outcome.total is None else str(outcome.total),
        "currency": outcome.currency,
        "reason": outcome.reason,
        "updatedAt": iso_utc(outcome.updated_at),
    }


def product_json(product: Product) -> dict[str, object]:
    return {"sku": product.sku, "name": product.name, "unitPrice": str(product.unit_price),
            "currency": product.currency, "stock": product.stock}
