"""What the Functions host sends the worker with a Service Bus trigger: the body and the binding data.

The names and their encodings are the host's, not a convenient superset:

- **Names**: the Service Bus extension (v5) ``ServiceBusTriggerBindingStrategy.AddBindingData`` lists
  what a trigger binds: :data:`SINGLE_MESSAGE_NAMES` for one message, each with an ``Array`` suffix for a
  batch (:data:`BATCH_NAMES`). The message actions and clients it also binds are objects the host does not
  send. Not sent, so ``None`` under the real host even though the worker's ``ServiceBusMessage`` has fields
  for them: ``DeadLetterReason``, ``DeadLetterErrorDescription``, ``LockedUntil``, ``State``,
  ``TimeToLive``, ``ScheduledEnqueueTimeUtc``, ``EnqueuedSequenceNumber`` (a dead-lettered message's
  reason is in its application properties).
- **Encodings**: the host's ``GrpcMessageConversionExtensions.ToRpc``: strings as ``string``; numbers,
  dates and dictionaries (and arrays) as ``json`` (dates the way Json.NET writes them, seven fractional
  digits); nulls are skipped, and so is ``sys``.
"""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType

SINGLE_MESSAGE_NAMES = (
    "DeliveryCount", "DeadLetterSource", "LockToken", "ExpiresAtUtc", "ExpiresAt", "EnqueuedTimeUtc",
    "EnqueuedTime", "MessageId", "ContentType", "ReplyTo", "SequenceNumber", "To", "Subject", "Label",
    "CorrelationId", "ApplicationProperties", "UserProperties", "SessionId", "ReplyToSessionId",
    "PartitionKey", "TransactionPartitionKey",
)
BATCH_NAMES = tuple(f"{name}Array" for name in SINGLE_MESSAGE_NAMES)
_VIA_PARTITION_KEY = b"x-opt-via-partition-key"


class _Utc(datetime.datetime):
    """A ``DateTime`` of kind UTC: Json.NET writes ``...0000000Z``."""


class _Offset(datetime.datetime):
    """A ``DateTimeOffset``: Json.NET writes ``...0000000+00:00``."""


def message_values(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """The binding data of one message as .NET values (``None`` where the message has none)."""
    properties = application_properties(message)
    delivery_count = message.delivery_count
    enqueued = message.enqueued_time_utc
    expires = message.expires_at_utc
    annotations = message.raw_amqp_message.annotations or {}
    transaction_key = annotations.get(_VIA_PARTITION_KEY)
    return {
        # AMQP's header counts earlier failed attempts; Service Bus's DeliveryCount (as .NET and the
        # Functions host report it) counts this delivery too, so the first delivery is 1.
        "DeliveryCount": None if delivery_count is None else delivery_count + 1,
        "DeadLetterSource": message.dead_letter_source,
        "LockToken": None if message.lock_token is None else str(message.lock_token),
        "ExpiresAtUtc": _as(_Utc, expires),
        "ExpiresAt": _as(_Offset, expires),
        "EnqueuedTimeUtc": _as(_Utc, enqueued),
        "EnqueuedTime": _as(_Offset, enqueued),
        "MessageId": message.message_id,
        "ContentType": message.content_type,
        "ReplyTo": message.reply_to,
        "SequenceNumber": message.sequence_number,
        "To": message.to,
        "Subject": message.subject,
        "Label": message.subject,
        "CorrelationId": message.correlation_id,
        "ApplicationProperties": properties,
        "UserProperties": properties,
        "SessionId": message.session_id,
        "ReplyToSessionId": message.reply_to_session_id,
        "PartitionKey": message.partition_key,
        "TransactionPartitionKey": None if transaction_key is None else _text(transaction_key),
    }


def single_message(message: ServiceBusReceivedMessage, protos: SimpleNamespace) -> tuple[Any, dict[str, Any]]:
    """(the trigger's ``TypedData``, the trigger metadata) for a ``cardinality: one`` invocation."""
    values = message_values(message)
    metadata = {name: to_rpc(values[name], protos) for name in SINGLE_MESSAGE_NAMES if values[name] is not None}
    return protos.TypedData(bytes=message_body(message)), metadata


def message_batch(
    messages: Sequence[ServiceBusReceivedMessage], protos: SimpleNamespace
) -> tuple[Any, dict[str, Any]]:
    """(the trigger's ``TypedData``, the trigger metadata) for a ``cardinality: many`` invocation."""
    values = [message_values(message) for message in messages]
    metadata = {
        f"{name}Array": to_rpc([value[name] for value in values], protos) for name in SINGLE_MESSAGE_NAMES
    }
    bodies = protos.CollectionBytes(bytes=[message_body(message) for message in messages])
    return protos.TypedData(collection_bytes=bodies), metadata


def to_rpc(value: Any, protos: SimpleNamespace) -> Any:
    """``ToRpc``: a string as ``string``; anything else as ``json``."""
    if isinstance(value, str):
        return protos.TypedData(string=value)
    return protos.TypedData(json=json.dumps(value, default=_json_value, separators=(",", ":")))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return _json_date(value)
    raise TypeError(f"{type(value).__name__} is not a binding data value")


def _json_date(value: datetime.datetime) -> str:
    utc = value.astimezone(datetime.UTC) if value.tzinfo else value
    text = utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "0"
    return text + ("+00:00" if isinstance(value, _Offset) else "Z")


def _as(kind: type[datetime.datetime], value: datetime.datetime | None) -> datetime.datetime | None:
    if value is None:
        return None
    utc = value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)
    return kind(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, datetime.UTC)


def message_body(message: ServiceBusReceivedMessage) -> bytes:
    """The body as bytes: data sections joined; an AMQP value or sequence body as UTF-8 text or JSON."""
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(bytes(part) for part in message.body)
    value = message.body
    if message.body_type == AmqpMessageBodyType.SEQUENCE:
        value = list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(_plain(value)).encode("utf-8")


def application_properties(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """Application properties with text keys and JSON-friendly values."""
    raw = message.application_properties or {}
    return {_text(key): _plain(value) for key, value in raw.items()}


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, datetime.datetime):
        return _json_date(_as(_Utc, value))  # type: ignore[arg-type]
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {_text(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return str(value)
