"""The binding data the local host sends with a Service Bus trigger: the Functions host's names and ToRpc
encodings, decoded by the worker library's converter into the message a function gets in Azure.

The messages come from the real local broker through the real SDK (no hand-built received messages)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator

import pytest
from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from local_functions_host import binding_data, worker_protocol
from localbus.embedded import running_broker

NOT_SENT_BY_THE_HOST = {"DeadLetterReason", "DeadLetterErrorDescription", "LockedUntil", "State", "TimeToLive",
                        "ScheduledEnqueueTimeUtc", "EnqueuedSequenceNumber", "sys"}


@pytest.fixture(scope="module")
def received() -> Iterator[list]:
    with running_broker({"queues": [{"name": "q"}]}) as broker, \
            ServiceBusClient.from_connection_string(broker.connection_string) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages([
                ServiceBusMessage(b'{"n": 1}', message_id="m-1", correlation_id="c-1", content_type="application/json",
                                  subject="order", time_to_live=datetime.timedelta(minutes=5),
                                  application_properties={"schemaVersion": 1, "flag": True, "name": "x"}),
                ServiceBusMessage(b'{"n": 2}', message_id="m-2"),
            ])
        with client.get_queue_receiver("q") as receiver:
            yield receiver.receive_messages(max_message_count=2, max_wait_time=5)


def decoded(data, metadata):
    datums = {name: meta.Datum(value.string, "string") if value.WhichOneof("data") == "string"
              else meta.Datum(value.json, "json") for name, value in metadata.items()}
    return ServiceBusMessageInConverter.decode(meta.Datum(data.bytes, "bytes"), trigger_metadata=datums)


def test_strings_go_as_string_and_numbers_dates_and_dictionaries_as_json(received: list) -> None:
    protos = worker_protocol.load()
    _, metadata = binding_data.single_message(received[0], protos)

    kinds = {name: value.WhichOneof("data") for name, value in metadata.items()}
    assert kinds["MessageId"] == kinds["CorrelationId"] == kinds["LockToken"] == kinds["Subject"] == "string"
    assert kinds["DeliveryCount"] == kinds["SequenceNumber"] == kinds["ApplicationProperties"] == "json"
    assert metadata["DeliveryCount"].json == "1"
    assert json.loads(metadata["ApplicationProperties"].json) == {"schemaVersion": 1, "flag": True, "name": "x"}
    # Json.NET's dates: a DateTime of kind UTC ends in Z, a DateTimeOffset in +00:00; seven fractional digits.
    assert json.loads(metadata["EnqueuedTimeUtc"].json).endswith("Z")
    assert json.loads(metadata["EnqueuedTime"].json).endswith("+00:00")
    assert len(json.loads(metadata["EnqueuedTimeUtc"].json).split(".")[1]) == 8


def test_only_the_hosts_names_are_sent_and_nulls_are_skipped(received: list) -> None:
    protos = worker_protocol.load()
    _, full = binding_data.single_message(received[0], protos)
    _, bare = binding_data.single_message(received[1], protos)

    assert set(full) <= set(binding_data.SINGLE_MESSAGE_NAMES)
    assert not set(full) & NOT_SENT_BY_THE_HOST
    assert "CorrelationId" not in bare and "Subject" not in bare and "ContentType" not in bare


def test_the_worker_converter_reads_them_as_under_the_functions_host(received: list) -> None:
    protos = worker_protocol.load()
    message = decoded(*binding_data.single_message(received[0], protos))

    assert (message.message_id, message.correlation_id, message.subject) == ("m-1", "c-1", "order")
    assert message.delivery_count == 1 and message.get_body() == b'{"n": 1}'
    assert message.enqueued_time_utc == received[0].enqueued_time_utc.replace(tzinfo=datetime.UTC)
    assert message.application_properties == {"schemaVersion": 1, "flag": True, "name": "x"}
    assert (message.locked_until, message.time_to_live, message.dead_letter_reason) == (None, None, None)


def test_a_batch_sends_each_name_as_an_array(received: list) -> None:
    protos = worker_protocol.load()
    data, metadata = binding_data.message_batch(received, protos)

    assert set(metadata) == set(binding_data.BATCH_NAMES)
    assert json.loads(metadata["MessageIdArray"].json) == ["m-1", "m-2"]
    assert list(data.collection_bytes.bytes) == [b'{"n": 1}', b'{"n": 2}']
