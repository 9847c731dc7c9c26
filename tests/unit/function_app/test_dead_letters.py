"""What a dead-lettered ``orders`` message means for its order (the dead-letter handler's decision).

Messages are built as the Functions host delivers them: the host's binding data (the broker's reason in
the application properties, no ``DeadLetterReason`` binding), decoded by the worker library's converter.
"""

import json
import logging
import uuid

from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessage, ServiceBusMessageInConverter

from function_app.dead_letters import failed_order_command


def dead_lettered(body: bytes, *, message_id: str, reason: str = "MaxDeliveryCountExceeded",
                  description: str | None = None) -> ServiceBusMessage:
    properties = {"DeadLetterReason": reason, **({"DeadLetterErrorDescription": description} if description else {})}
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


def test_a_message_naming_no_order_is_kept_in_the_error_log(caplog):
    with caplog.at_level(logging.ERROR, logger="function_app"):
        command = failed_order_command(dead_lettered(b"stray payload", message_id="not-an-order"))

    assert command is None
    assert caplog.records[-1].body == "stray payload"
