"""What a dead-lettered ``orders`` message means for its order."""

from __future__ import annotations

import logging

import azure.functions as func

from orders.domain.commands import MarkOrderFailed
from orders.domain.errors import PoisonMessage
from orders.validation import InvalidCorrelationId, parse_correlation_id, parse_order_message

log = logging.getLogger("function_app")

BODY_LOG_LIMIT = 64 * 1024


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


def failed_order_command(message: func.ServiceBusMessage) -> MarkOrderFailed | None:
    """``MarkOrderFailed`` with a reason saying what was wrong, or None when no order can be named."""
    try:
        correlation_id = parse_correlation_id(message.correlation_id or message.message_id)
    except InvalidCorrelationId:
        # It is removed from the dead-letter queue like any other, so this line is its record: keep the body.
        log.error("dead-lettered message names no order; recorded here only",
                  extra={"messageId": message.message_id, "deadLetterReason": dead_letter_reason(message)[0],
                         "body": message.get_body()[:BODY_LOG_LIMIT].decode("utf-8", "replace")})
        return None
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
    return MarkOrderFailed(correlation_id=correlation_id, reason=reason, customer_id=customer_id, currency=currency)
