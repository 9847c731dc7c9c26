"""The host's spans, as the Functions host makes them: one per HTTP request and one per Service Bus delivery.

The worker continues the context the host sends with each invocation (``PYTHON_ENABLE_OPENTELEMETRY``), so
the app's spans are children of these. Without configured telemetry the API's no-op spans cost next to nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.servicebus import ServiceBusReceivedMessage
from opentelemetry import trace

from service_platform.message_tracing import process_span

from .loader import FunctionSpec


def name_request_span(method: str, route: str, function: str) -> None:
    """Name the current request's server span after the route it matched (the ASGI middleware knows only the path)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attributes({"http.route": route, "faas.name": function, "faas.trigger": "http"})


@contextmanager
def delivery_span(spec: FunctionSpec, message: ServiceBusReceivedMessage) -> Iterator[None]:
    """The consumer span of one delivery to ``spec``'s function, child of the context the message carries."""
    trigger = spec.service_bus
    assert trigger is not None
    with process_span(trigger.source, message.application_properties, message_id=str(message.message_id or ""),
                      correlation_id=message.correlation_id, session_id=message.session_id) as span:
        if span.is_recording():
            span.set_attributes({"faas.name": spec.name, "faas.trigger": "pubsub",
                                 "messaging.servicebus.message.delivery_count": message.delivery_count or 0})
        yield
