"""What a dead-lettered ``orders`` message means: a dead letter to keep, and its order ``Failed``."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from orders.adapters.servicebus_publishers import ATTEMPT_PROPERTY
from orders.domain.commands import MarkOrderFailed
from orders.domain.dead_letters import DeadLetter
from orders.domain.errors import PoisonMessage
from orders.service_layer.dead_letters import KeepDeadLetter
from orders.validation import InvalidCorrelationId, parse_correlation_id, parse_order_message


def dead_letter_reason(message: func.ServiceBusMessage) -> tuple[str | None, str | None]:
    """(reason, description) the broker gave when it dead-lettered ``message``.

    The Functions host does not bind ``DeadLetterReason``/``DeadLetterErrorDescription``, so in Azure the
    message's fields are ``None`` and Service Bus's reason sits in its application properties; the fields
    are read only when a host does send them.
    """
    properties = message.application_properties or {}
    reason = properties.get("DeadLetterReason") or message.dead_letter_reason
    description = properties.get("DeadLetterErrorDescription") or message.dead_letter_error_description
    return (None if reason is None else str(reason)), (None if description is None else str(description))


def attempt_of(message: func.ServiceBusMessage) -> int:
    """The order's attempt the message carries: 1 unless a replay sent it."""
    value = (message.application_properties or {}).get(ATTEMPT_PROPERTY, 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def keep_command(message: func.ServiceBusMessage, now: datetime | None = None) -> KeepDeadLetter:
    """The dead letter as delivered, with ``MarkOrderFailed`` when an order can be named."""
    failed = failed_order_command(message)
    reason, description = dead_letter_reason(message)
    dead_letter = DeadLetter(
        message_id=str(message.message_id or ""), sequence_number=message.sequence_number,
        body=message.get_body(), reason=reason, description=description,
        delivery_count=message.delivery_count or 0, enqueued_at=_utc(message.enqueued_time_utc),
        # The trigger is not told when the broker dead-lettered it: the first time it is kept is the nearest.
        dead_lettered_at=now or datetime.now(UTC),
        correlation_id=None if failed is None else failed.correlation_id, customer_id=message.session_id,
        attempt=attempt_of(message), message_properties=_message_properties(message),
        application_properties=dict(message.application_properties or {}))
    return KeepDeadLetter(dead_letter, failed)


def failed_order_command(message: func.ServiceBusMessage) -> MarkOrderFailed | None:
    """``MarkOrderFailed`` with a reason saying what was wrong, or None when no order can be named."""
    try:
        correlation_id = parse_correlation_id(message.correlation_id or message.message_id)
    except InvalidCorrelationId:
        return None  # kept as a dead letter all the same; an operator can repair or discard it
    reason_text, description = dead_letter_reason(message)
    broker_reason = reason_text or "dead-lettered"
    if description:
        broker_reason += f" ({description})"
    customer_id = currency = None
    try:
        order = parse_order_message(message.get_body())
        reason = f"processing failed repeatedly: {broker_reason}"
        customer_id, currency = order.customer_id, order.currency
    except PoisonMessage as poison:
        reason = f"{poison.reason} [{broker_reason}]"
    return MarkOrderFailed(correlation_id=correlation_id, reason=reason, customer_id=customer_id, currency=currency,
                           attempt=attempt_of(message))


def _message_properties(message: func.ServiceBusMessage) -> dict[str, object]:
    properties = {
        "messageId": message.message_id, "correlationId": message.correlation_id, "sessionId": message.session_id,
        "contentType": message.content_type, "subject": message.subject, "to": message.to,
        "replyTo": message.reply_to, "replyToSessionId": message.reply_to_session_id,
        "partitionKey": message.partition_key, "deadLetterSource": message.dead_letter_source,
        "sequenceNumber": message.sequence_number, "deliveryCount": message.delivery_count,
        "enqueuedTimeUtc": _iso(message.enqueued_time_utc), "expiresAtUtc": _iso(message.expires_at_utc),
    }
    return {name: value for name, value in properties.items() if value is not None}


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    utc = _utc(moment)
    return None if utc is None else utc.isoformat()
