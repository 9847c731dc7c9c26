"""The JSON shapes of the order contracts (docs/contracts.md), in one place.

The ``orders`` queue message body, and the status shape that the status answer and the status event
share (the WebSocket frame is built from it by the WebSocket service). The business core knows none of
them: adapters and the function app's responses call these.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from orders.domain.dead_letters import DeadLetter, DeadLetterAction
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
        "attempt": outcome.attempt,
    }


def product_json(product: Product) -> dict[str, object]:
    return {"sku": product.sku, "name": product.name, "unitPrice": str(product.unit_price),
            "currency": product.currency, "stock": product.stock}


def dead_letter_json(dead_letter: DeadLetter) -> dict[str, object]:
    """A kept dead letter in a list: what it is and where it stands, without its body."""
    return {
        "id": dead_letter.id,
        "state": dead_letter.state.value,
        "correlationId": dead_letter.correlation_id,
        "customerId": dead_letter.customer_id,
        "attempt": dead_letter.attempt,
        "reason": dead_letter.reason,
        "description": dead_letter.description,
        "messageId": dead_letter.message_id,
        "sequenceNumber": dead_letter.sequence_number,
        "deliveryCount": dead_letter.delivery_count,
        "enqueuedAt": None if dead_letter.enqueued_at is None else iso_utc(dead_letter.enqueued_at),
        "deadLetteredAt": iso_utc(dead_letter.dead_lettered_at),
        "replayAttempt": dead_letter.replay_attempt,
    }


def dead_letter_detail_json(dead_letter: DeadLetter, actions: list[DeadLetterAction],
                            order: OrderOutcome | None) -> dict[str, object]:
    """One dead letter in full: its body (text when it is UTF-8, else base64), every property, the audit of
    what operators did with it and its order's current status."""
    try:
        body, encoding = dead_letter.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(dead_letter.body).decode("ascii"), "base64"
    return {
        **dead_letter_json(dead_letter),
        "body": body,
        "bodyEncoding": encoding,
        "replayedBody": None if dead_letter.replayed_body is None else dead_letter.replayed_body.decode("utf-8"),
        "messageProperties": dict(dead_letter.message_properties),
        "applicationProperties": dict(dead_letter.application_properties),
        "actions": [{"kind": action.kind.value, "actor": action.actor, "why": action.why, "at": iso_utc(action.at),
                     "attempt": action.attempt} for action in actions],
        "order": None if order is None else status_json(order),
    }
