"""Turn a received azure-servicebus message into the ``azure.functions`` ServiceBusMessage the worker builds.

The Functions host sends the message body plus trigger metadata (``MessageId``, ``DeliveryCount``,
``UserProperties``, ...) to the worker, which decodes them with ``ServiceBusMessageInConverter``.
Building the same metadata and running the same converter gives functions an identical object.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessage as FunctionsServiceBusMessage
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType


def to_function_message(
    message: ServiceBusReceivedMessage,
    *,
    function_name: str,
    session_locked_until: datetime.datetime | None = None,
) -> FunctionsServiceBusMessage:
    """The worker's ServiceBusMessage for ``message`` (cardinality one)."""
    metadata = trigger_metadata(message, function_name=function_name, session_locked_until=session_locked_until)
    converted = _Converter.decode(meta.Datum(message_body(message), "bytes"), trigger_metadata=metadata)
    assert isinstance(converted, FunctionsServiceBusMessage)
    return converted


# The exact texts ``_utc_text`` and ``_timespan_text`` write.
_UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)
_TIMESPAN_TEXT = re.compile(r"(\d\d):(\d\d):(\d\d)", re.ASCII)
_SECONDS_TEXT = re.compile(r"\d+", re.ASCII)


class _Converter(ServiceBusMessageInConverter, binding=None):
    """The worker's converter, reading the timestamps this module writes without its ``strptime`` loop.

    The library tries up to a dozen ``strptime`` formats per timestamp, more than ``_strptime`` caches,
    so each message recompiled their patterns. For the texts :func:`_utc_text` and
    :func:`_timespan_text` write, these parse to the very values that loop returns (the UTC format, then
    ``tzinfo`` UTC; ``HH:MM:SS`` or whole seconds as a timedelta); anything else goes to the library.
    """

    @classmethod
    def _parse_datetime(cls, datetime_str: str | None) -> datetime.datetime | None:
        if datetime_str and _UTC_TEXT.fullmatch(datetime_str):
            return datetime.datetime.fromisoformat(datetime_str[:-1]).replace(tzinfo=datetime.UTC)
        return super()._parse_datetime(datetime_str)

    @classmethod
    def _parse_timedelta(cls, timedelta_str: str | None) -> datetime.timedelta | None:
        if timedelta_str:
            parts = _TIMESPAN_TEXT.fullmatch(timedelta_str)
            if parts:
                hours, minutes, seconds = (int(part) for part in parts.groups())
                if hours < 24 and minutes < 60 and seconds < 60:
                    return datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)
            elif _SECONDS_TEXT.fullmatch(timedelta_str):
                return datetime.timedelta(seconds=int(timedelta_str))
        return super()._parse_timedelta(timedelta_str)


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


def trigger_metadata(
    message: ServiceBusReceivedMessage,
    *,
    function_name: str,
    session_locked_until: datetime.datetime | None = None,
) -> dict[str, meta.Datum]:
    """The binding data the Functions host sends with a single Service Bus message."""
    properties = application_properties(message)
    delivery_count = message.delivery_count
    values: dict[str, Any] = {
        "MessageId": message.message_id,
        "SessionId": message.session_id,
        "CorrelationId": message.correlation_id,
        "ContentType": message.content_type,
        # AMQP's header counts earlier failed attempts; Service Bus's DeliveryCount (as .NET and the
        # Functions host report it) counts this delivery too, so the first delivery is 1.
        "DeliveryCount": None if delivery_count is None else delivery_count + 1,
        "EnqueuedTimeUtc": message.enqueued_time_utc,
        "ExpiresAtUtc": message.expires_at_utc,
        "SequenceNumber": message.sequence_number,
        "EnqueuedSequenceNumber": message.enqueued_sequence_number,
        "LockToken": None if message.lock_token is None else str(message.lock_token),
        "LockedUntil": message.locked_until_utc or session_locked_until,
        "Subject": message.subject,
        "Label": message.subject,
        "ReplyTo": message.reply_to,
        "ReplyToSessionId": message.reply_to_session_id,
        "To": message.to,
        "TimeToLive": message.time_to_live,
        "PartitionKey": message.partition_key,
        "ScheduledEnqueueTimeUtc": message.scheduled_enqueue_time_utc,
        "State": int(message.state.value) if message.state is not None else None,
        "DeadLetterSource": message.dead_letter_source,
        "DeadLetterReason": message.dead_letter_reason,
        "DeadLetterErrorDescription": message.dead_letter_error_description,
    }
    metadata = {key: _datum(value) for key, value in values.items() if value is not None}
    encoded_properties = json.dumps(properties)
    metadata["ApplicationProperties"] = meta.Datum(encoded_properties, "json")
    metadata["UserProperties"] = meta.Datum(encoded_properties, "json")
    metadata["sys"] = meta.Datum(
        json.dumps({
            "MethodName": function_name,
            "UtcNow": datetime.datetime.now(datetime.UTC).isoformat(),
            "RandGuid": str(uuid.uuid4()),
        }),
        "json",
    )
    return metadata


def application_properties(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """Application properties with text keys and JSON-friendly values."""
    raw = message.application_properties or {}
    return {_text(key): _plain(value) for key, value in raw.items()}


def _datum(value: Any) -> meta.Datum:
    if isinstance(value, bool):
        return meta.Datum(json.dumps(value), "json")
    if isinstance(value, int):
        return meta.Datum(str(value), "json")
    if isinstance(value, datetime.datetime):
        return meta.Datum(_utc_text(value), "string")
    if isinstance(value, datetime.timedelta):
        return meta.Datum(_timespan_text(value), "string")
    return meta.Datum(str(value), "string")


def _utc_text(value: datetime.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def _timespan_text(value: datetime.timedelta) -> str:
    # The worker parses "HH:MM:SS" or a whole number of seconds.
    seconds = int(value.total_seconds())
    if 0 <= seconds < 86400:
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return str(seconds)


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
        return _utc_text(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {_text(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return str(value)
