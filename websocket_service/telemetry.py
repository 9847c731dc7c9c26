"""The WebSocket service's spans and metrics: an event's receipt, each push to a socket, the open sockets.

A push is a span of its own, child of the receipt (the event carries its context), from the moment the
event is queued for the socket until the frame is written, so a slow reader shows as a long push.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind

from service_platform.message_tracing import context_from_traceparent, current_traceparent, process_span
from service_platform.telemetry import CORRELATION_ID_ATTRIBUTE
from websocket_service.core import StatusEvent

_tracer = trace.get_tracer("orders.websocket")
_meter = metrics.get_meter("orders.websocket")
_connections = _meter.create_up_down_counter("websocket.connections", unit="{connection}",
                                             description="Open WebSocket connections")
_pushes = _meter.create_counter("websocket.pushes", unit="{frame}", description="Status frames written to sockets")


@contextmanager
def receipt(queue: str, properties: Mapping[Any, Any] | None, event: StatusEvent,
            message_id: str | None) -> Iterator[StatusEvent]:
    """The consumer span of one status event; yields the event carrying that span's context."""
    with process_span(queue, properties, message_id=message_id, correlation_id=event.correlation_id) as span:
        if span.is_recording():
            span.set_attribute("orders.status", event.status)
        yield replace(event, traceparent=current_traceparent() or event.traceparent)


def start_push(event: StatusEvent) -> Span | None:
    """A ``push`` span for one socket, ended by :func:`pushed` once the frame is written; None untraced."""
    if not event.traceparent:
        return None
    span = _tracer.start_span("push status", context=context_from_traceparent(event.traceparent),
                              kind=SpanKind.PRODUCER,
                              attributes={CORRELATION_ID_ATTRIBUTE: event.correlation_id, "orders.status": event.status})
    return span if span.is_recording() else None


def pushed(span: Span | None) -> None:
    _pushes.add(1)
    if span is not None:
        span.end()


def push_abandoned(span: Span | None, why: str) -> None:
    if span is not None:
        span.set_status(trace.Status(trace.StatusCode.ERROR, why))
        span.end()


def connection_opened() -> None:
    _connections.add(1)


def connection_closed() -> None:
    _connections.add(-1)
