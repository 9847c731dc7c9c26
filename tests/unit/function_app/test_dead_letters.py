"""What a dead-lettered ``orders`` message means for its order (the dead-letter handler's decision).

Messages are built as the Functions host delivers them: the host's binding data (the broker's reason in
the application properties, no ``DeadLetterReason`` binding), decoded by the worker library's converter.
"""

import json
import uuid

from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessage, ServiceBusMessageInConverter

from datetime import UTC, datetime

from function_app.dead_letters import failed_order_command, keep_command


def dead_lettered(body: bytes, *, message_id: str, reason: str = "MaxDeliveryCountExceeded",
                  description: str | None = None, attempt: int = 1) -> ServiceBusMessage:
    properties = {"DeadLetterReason": reason, **({"DeadLetterErrorDescription": description} if description else {}),
                  **({"attempt": attempt} if attempt != 1 else {})}
    metadata = {
        "MessageId": meta.Datum(message_id, "string"),
        "DeliveryCount": meta.Datum("10", "json"),
        "DeadLetterSource": meta.Datum("orders", "string"),
        "SequenceNumber": meta.Datum("42", "json"),
        "EnqueuedTimeUtc": meta.Datum('"2026-12-01T10:00:00.1234567Z"', "json"),
        "ApplicationProperties": meta.Datum(json.dumps(properties), "json"),
        "UserProperties": meta.Datum(json.dumps(properties), "json"),
    }
    message = ServiceBusMessageInConverter.decode(meta.Datum(body, "bytes"), trigger_metadata=metadata)
    assert message.dead_letter_reason is None, "the host does not bind DeadLetterReason"
    return message


def test_a_host_that_binds_the_reason_fields_is_read_too():
    message = ServiceBusMessage(body=b"{not json", message_id=str(uuid.uuid4()), user_properties={},
                                application_properties={}, dead_letter_reason="TTLExpiredException")

    assert "TTLExpiredException" in failed_order_command(message).reason


def test_an_unreadable_order_fails_with_what_was_wrong_and_the_brokers_reason():
    cid = str(uuid.uuid4())

    command = failed_order_command(dead_lettered(b"{not json", message_id=cid))

    assert command.correlation_id == cid
    assert "not valid JSON" in command.reason and "MaxDeliveryCountExceeded" in command.reason
    assert command.customer_id is None


def test_a_valid_order_that_kept_failing_names_the_customer_and_the_brokers_reason():
    cid = str(uuid.uuid4())
    body = json.dumps({"schemaVersion": 1, "correlationId": cid, "customerId": "c-9", "currency": "EUR",
                       "items": [{"sku": "SKU-1", "quantity": 1}], "acceptedAt": "2026-01-01T00:00:00Z"}).encode()

    command = failed_order_command(dead_lettered(body, message_id=cid, description="lock lost ten times"))

    assert (command.customer_id, command.currency) == ("c-9", "EUR")
    assert command.reason == "processing failed repeatedly: MaxDeliveryCountExceeded (lock lost ten times)"


def test_a_message_naming_no_order_is_kept_as_a_dead_letter_with_no_order_to_fail():
    command = keep_command(dead_lettered(b"stray payload", message_id="not-an-order"))

    assert command.failed is None
    assert (command.dead_letter.body, command.dead_letter.correlation_id) == (b"stray payload", None)


def test_the_dead_letter_keeps_what_the_host_delivers():
    cid = str(uuid.uuid4())
    moment = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)

    kept = keep_command(dead_lettered(b"{not json", message_id=cid, description="lock lost ten times",
                                      attempt=3), now=moment)

    dead_letter = kept.dead_letter
    assert (dead_letter.message_id, dead_letter.sequence_number, dead_letter.delivery_count) == (cid, 42, 10)
    assert (dead_letter.reason, dead_letter.description) == ("MaxDeliveryCountExceeded", "lock lost ten times")
    assert dead_letter.enqueued_at == datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert (dead_letter.dead_lettered_at, dead_letter.correlation_id, dead_letter.attempt) == (moment, cid, 3)
    assert dead_letter.message_properties["deadLetterSource"] == "orders"
    assert dead_letter.application_properties["DeadLetterReason"] == "MaxDeliveryCountExceeded"
    assert kept.failed.attempt == 3 and kept.failed.correlation_id == cid
