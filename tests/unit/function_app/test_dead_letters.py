"""What a dead-lettered ``orders`` message means for its order (the dead-letter handler's decision)."""

import json
import logging
import uuid

from azure.functions.servicebus import ServiceBusMessage

from function_app.dead_letters import failed_order_command


def dead_lettered(body: bytes, *, message_id: str, reason: str = "MaxDeliveryCountExceeded",
                  description: str | None = None) -> ServiceBusMessage:
    return ServiceBusMessage(body=body, message_id=message_id, user_properties={}, application_properties={},
                             dead_letter_reason=reason, dead_letter_error_description=description)


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
