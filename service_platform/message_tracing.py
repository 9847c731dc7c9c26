"""W3C trace context on Service Bus messages, carried the way the Azure SDKs carry it.

A send is a ``PRODUCER`` span whose context goes on the message as the ``Diagnostic-Id`` and ``traceparent``
application properties (and ``tracestate`` when there is one); the receiving side starts its ``CONSUMER``
span as that context's child, so one order is one trace from the HTTP request to the WebSocket push.

The SDK's own tracing is left off: this project's senders batch concurrent sends on a task of their own,
where the SDK would start its spans outside the order's trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service_platform.telemetry import CORRELATION_ID_ATTRIBUTE

DIAGNOSTIC_ID = "Diagnostic-Id"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("orders.messaging")


def _text(value: Any) -> str:
    return bytes(value).decode("ascii", errors="replace") if isinstance(value, (bytes, bytearray, memoryview)) \
        else str(value)


def carrier_of(properties: Mapping[Any, Any] | None) -> dict[str, str]:
    """The trace context of a message's application properties (text or bytes keys), as W3C headers."""
    carrier: dict[str, str] = {}
    for key, value in (properties or {}).items():
        name = _text(key)
        if name in (TRACEPARENT, TRACESTATE) or (name == DIAGNOSTIC_ID and TRACEPARENT not in carrier):
            carrier[TRACEPARENT if name == DIAGNOSTIC_ID else name] = _text(value)
    return carrier


def context_of(properties: Mapping[Any, Any] | None) -> otel_context.Context:
    """The context a message's consumer continues (empty when the sender passed none)."""
    return _propagator.extract(carrier_of(properties))


def context_from_traceparent(traceparent: str | None) -> otel_context.Context:
    return _propagator.extract({TRACEPARENT: traceparent} if traceparent else {})


def current_traceparent() -> str:
    """The ``traceparent`` of the current span, or ``""`` when there is none."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT, "")


def _messaging_attributes(queue: str, operation: str, message_id: str | None,
                          correlation_id: str | None, session_id: str | None) -> dict[str, str]:
    attributes = {"messaging.system": "servicebus", "messaging.destination.name": queue,
                  "messaging.operation.type": operation}
    if message_id:
        attributes["messaging.message.id"] = message_id
    if correlation_id:
        attributes[CORRELATION_ID_ATTRIBUTE] = correlation_id
    if session_id:
        attributes["messaging.servicebus.message.session_id"] = session_id
    return attributes


@contextmanager
def send_span(queue: str, *, message_id: str, correlation_id: str | None = None,
              session_id: str | None = None, fallback_traceparent: str | None = None) -> Iterator[dict[str, str]]:
    """A ``send <queue>`` producer span around the send; yields the properties to put on the message.

    With tracing off, the current context (the invocation's, attached by the Functions worker) or
    ``fallback_traceparent`` (the HTTP request's header) is passed on unchanged.
    """
    with _tracer.start_as_current_span(
            f"send {queue}", kind=SpanKind.PRODUCER,
            attributes=_messaging_attributes(queue, "send", message_id, correlation_id, session_id)):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        if TRACEPARENT not in carrier and fallback_traceparent:
            carrier[TRACEPARENT] = fallback_traceparent
        properties = dict(carrier)
        if TRACEPARENT in carrier:
            properties[DIAGNOSTIC_ID] = carrier[TRACEPARENT]
        yield properties  # an exception marks the span failed (the SDK records it)


@contextmanager
def process_span(queue: str, properties: Mapping[Any, Any] | None, *, name: str | None = None,
                 message_id: str | None = None, correlation_id: str | None = None,
                 session_id: str | None = None) -> Iterator[Span]:
    """A ``process <queue>`` consumer span, child of the context the message carries."""
    with _tracer.start_as_current_span(
            name or f"process {queue}", context=context_of(properties), kind=SpanKind.CONSUMER,
            attributes=_messaging_attributes(queue, "process", message_id, correlation_id, session_id)) as span:
        yield span
