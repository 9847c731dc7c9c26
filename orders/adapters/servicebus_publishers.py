"""The core's publisher ports on top of ``ServiceBusBatchSender``: each maps the core's rules to Service Bus
properties (deduplication key → ``message_id``, ordering key → ``session_id``) and its JSON contract."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from azure.servicebus.aio import ServiceBusClient

from orders.adapters.servicebus_batch_sender import AcknowledgementUnknown, Envelope, SendFailed, ServiceBusBatchSender
from orders.domain.errors import AcceptanceUnknown, TransientError
from orders.domain.events import OrderStatusChanged
from orders.domain.model import MESSAGE_SCHEMA_VERSION, OrderMessage
from orders.json_contracts import order_message_json, status_json
from service_platform.message_tracing import send_span


#: The application property that carries an order's attempt number from the second attempt on (a replay).
ATTEMPT_PROPERTY = "attempt"


def order_message_body(message: OrderMessage) -> bytes:
    return _json(order_message_json(message))


def _json(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class ServiceBusOrderPublisher:
    """Implements ``OrderMessagePublisher``: accepted orders to the ``orders`` queue, batched under load."""

    def __init__(self, publisher: ServiceBusBatchSender) -> None:
        self._publisher = publisher

    async def publish(self, message: OrderMessage) -> None:
        with send_span(self._publisher.queue, message_id=message.deduplication_key,
                       correlation_id=message.correlation_id, session_id=message.ordering_key,
                       fallback_traceparent=message.traceparent) as trace_properties:
            properties: dict[str, str | int] = {"schemaVersion": MESSAGE_SCHEMA_VERSION, **trace_properties}
            if message.attempt != 1:
                properties[ATTEMPT_PROPERTY] = message.attempt
            envelope = Envelope(
                body=order_message_body(message), message_id=message.deduplication_key,
                correlation_id=message.correlation_id, session_id=message.ordering_key,
                application_properties=properties,
            )
            try:
                await self._publisher.publish(envelope)
            except AcknowledgementUnknown as error:
                raise AcceptanceUnknown(str(error)) from error
            except SendFailed as error:
                raise TransientError(str(error)) from error

    async def check(self) -> None:
        try:
            await self._publisher.check()
        except SendFailed as error:
            raise TransientError(str(error)) from error

    async def close(self) -> None:
        await self._publisher.close()


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:
        loop.close()


class ServiceBusStatusEventPublisher:
    """Implements the synchronous ``StatusEventPublisher`` for the processing path.

    Processing runs in worker threads (its SQL driver blocks), while the SDK's async client wants one event
    loop: this adapter owns a private loop in a daemon thread, so events from all processing threads share
    one link and are batched together.
    """

    def __init__(self, client_factory: Callable[[], ServiceBusClient], queue: str, *, timeout_seconds: float = 10.0) -> None:
        self._client_factory = client_factory
        self._queue = queue
        self._timeout = timeout_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: ServiceBusBatchSender | None = None
        self._lock = threading.Lock()

    def publish(self, event: OrderStatusChanged) -> None:
        with send_span(self._queue, message_id=event.deduplication_key,
                       correlation_id=event.correlation_id) as trace_properties:
            envelope = Envelope(body=_json(status_json(event.outcome)), message_id=event.deduplication_key,
                                correlation_id=event.correlation_id, application_properties=dict(trace_properties))
            publisher = self._started()
            try:
                self._run(publisher.publish(envelope))
            except (SendFailed, TimeoutError) as error:
                raise TransientError(f"status event for {event.correlation_id} not sent: {error}") from error

    def close(self) -> None:
        with self._lock:
            loop, publisher = self._loop, self._publisher
            self._loop = self._publisher = None
        if loop is not None and publisher is not None:
            asyncio.run_coroutine_threadsafe(publisher.close(), loop).result(self._timeout)
            loop.call_soon_threadsafe(loop.stop)

    def _started(self) -> ServiceBusBatchSender:
        with self._lock:
            if self._publisher is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=_run_until_stopped, args=(loop,), daemon=True,
                                 name=f"publisher-{self._queue}").start()
                self._loop = loop
                self._publisher = ServiceBusBatchSender(self._client_factory, self._queue, timeout_seconds=self._timeout)
            return self._publisher

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self._timeout + 1)
