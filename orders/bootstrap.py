"""Composition root: the only place that reads settings and builds adapters.

The Functions worker imports the app just to index it, so nothing here connects at import time: the
service is built on first use, once per process, and every client connects lazily. The handlers'
collaborators are bound here once; a trigger only calls ``order_service().submit_order(command)``.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from orders.adapters.clock import SystemClock
from orders.adapters.order_metrics import OrderMetrics
from orders.adapters.redis_accepted_records import RedisAcceptedRecordStore
from orders.adapters.redis_submission_limits import RedisSubmissionLimiter
from orders.adapters.servicebus_batch_sender import ServiceBusBatchSender
from orders.adapters.servicebus_publishers import (
    ServiceBusOrderPublisher,
    ServiceBusStatusEventPublisher,
    order_message_body,
)
from orders.adapters.sql import SqlUnitOfWork, create_engine_for
from orders.domain.callers import Caller
from orders.domain.commands import ProcessOrder, SubmitOrder
from orders.domain.dead_letters import DeadLetter, DeadLetterFilter, RepairedOrder
from orders.domain.model import OrderOutcome, Product
from orders.domain.ports import Clock, SubmissionLimiter, UnitOfWorkFactory
from orders.service_layer import dead_letters, handlers
from orders.service_layer.dead_letters import DeadLetterDetail, KeepDeadLetter, Replayed
from orders.service_layer.handlers import Accepted, IntakeOptions
from orders.validation import parse_order_message
from orders.settings import OrderSettings
from service_platform.access_tokens import AccessTokenValidator
from service_platform.heap import freeze_long_lived_objects
from service_platform.notify_tokens import NotifyTokenSigner
from service_platform.redis_clients import redis_client
from service_platform.servicebus_clients import ServiceBusClientFactory
from service_platform.telemetry import configure_telemetry, instrument_sql_engine

# The SDK's default retries can hold a request for half a minute; intake must rather answer 503 quickly
# (the client retries) and processing is retried by redelivery anyway.
SERVICEBUS_RETRY_OPTIONS = {"retry_total": 2, "retry_backoff_factor": 0.5, "retry_backoff_max": 4}


@dataclass
class OrderService:
    """The order use cases with their collaborators bound once: what the function app's triggers call."""

    settings: OrderSettings
    engine: Engine
    uow_factory: UnitOfWorkFactory
    order_publisher: ServiceBusOrderPublisher
    status_publisher: ServiceBusStatusEventPublisher
    accepted_records: RedisAcceptedRecordStore
    limiter: SubmissionLimiter
    access_tokens: AccessTokenValidator
    clock: Clock
    intake_options: IntakeOptions
    metrics: OrderMetrics = field(default_factory=OrderMetrics)

    async def submit_order(self, command: SubmitOrder) -> Accepted:
        accepted = await handlers.submit_order(command, publisher=self.order_publisher,
                                               accepted_records=self.accepted_records, limiter=self.limiter,
                                               clock=self.clock, options=self.intake_options)
        self.metrics.accepted()
        return accepted

    def process_order(self, command: ProcessOrder) -> OrderOutcome:
        outcome = handlers.process_order(command, uow_factory=self.uow_factory, publisher=self.status_publisher,
                                         limiter=self.limiter, clock=self.clock)
        self.metrics.finished(outcome, command.accepted_at)
        return outcome

    async def get_order_status(self, correlation_id: str, caller: Caller, receipt: str | None = None) -> OrderOutcome:
        return await handlers.get_order_status(correlation_id, caller, uow_factory=self.uow_factory,
                                               accepted_records=self.accepted_records, receipt=receipt,
                                               receipt_secret=self.intake_options.correlation_id_secret)

    async def list_products(self) -> list[Product]:
        return await asyncio.to_thread(handlers.list_products, uow_factory=self.uow_factory)

    # ----- dead letters -------------------------------------------------------------------------
    def keep_dead_letter(self, command: KeepDeadLetter) -> OrderOutcome | None:
        outcome = dead_letters.keep_dead_letter(command, uow_factory=self.uow_factory,
                                                publisher=self.status_publisher, limiter=self.limiter, clock=self.clock)
        self.metrics.dead_lettered(command.dead_letter.reason)
        if outcome is not None:
            self.metrics.finished(outcome, command.dead_letter.enqueued_at)
        return outcome

    async def list_dead_letters(self, caller: Caller, criteria: DeadLetterFilter) -> list[DeadLetter]:
        return await asyncio.to_thread(dead_letters.list_dead_letters, caller, criteria,
                                       uow_factory=self.uow_factory)

    async def show_dead_letter(self, caller: Caller, dead_letter_id: int) -> DeadLetterDetail:
        return await asyncio.to_thread(dead_letters.show_dead_letter, caller, dead_letter_id,
                                       uow_factory=self.uow_factory, read_order=parse_order_message)

    async def replay_dead_letter(self, caller: Caller, dead_letter_id: int, why: str,
                                 repaired: RepairedOrder | None = None) -> Replayed:
        return await dead_letters.replay_dead_letter(
            caller, dead_letter_id, why, repaired=repaired, uow_factory=self.uow_factory,
            publisher=self.order_publisher, status_publisher=self.status_publisher, clock=self.clock,
            read_order=parse_order_message, write_order=order_message_body)

    async def discard_dead_letter(self, caller: Caller, dead_letter_id: int, why: str) -> DeadLetter:
        return await asyncio.to_thread(dead_letters.discard_dead_letter, caller, dead_letter_id, why,
                                       uow_factory=self.uow_factory, clock=self.clock)

    # ----- dependency checks (readiness) --------------------------------------------------------
    async def check_broker(self) -> None:
        await self.order_publisher.check()

    async def check_sql(self) -> None:
        def select_one() -> None:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        await asyncio.to_thread(select_one)

    async def check_redis(self) -> None:
        await self.accepted_records.ping()


def build_order_service(settings: OrderSettings) -> OrderService:
    client_factory = ServiceBusClientFactory(
        settings.servicebus_connection.get_secret_value() if settings.servicebus_connection else None,
        settings.servicebus_namespace, settings.azure_client_id, client_options=SERVICEBUS_RETRY_OPTIONS)
    engine = create_engine_for(settings)
    instrument_sql_engine(engine)
    redis_url, entra = settings.redis_url, settings.redis_entra_auth
    return OrderService(
        settings=settings,
        engine=engine,
        uow_factory=SqlUnitOfWork.factory(engine),
        order_publisher=ServiceBusOrderPublisher(ServiceBusBatchSender(client_factory, settings.orders_queue)),
        status_publisher=ServiceBusStatusEventPublisher(client_factory, settings.order_status_queue),
        accepted_records=RedisAcceptedRecordStore(redis_client(redis_url, entra_auth=entra)),
        limiter=RedisSubmissionLimiter(
            redis_client(redis_url, entra_auth=entra), redis_client(redis_url, entra_auth=entra, blocking=True),
            max_in_flight=settings.max_orders_in_flight, max_per_minute=settings.max_orders_per_minute,
            in_flight_window_seconds=settings.in_flight_window_seconds),
        access_tokens=AccessTokenValidator(
            issuer=settings.auth_issuer, audience=settings.auth_audience, jwks_url=settings.auth_jwks_url,
            subject_claim=settings.auth_customer_claim, leeway_seconds=settings.auth_clock_leeway_seconds,
            min_refresh_seconds=settings.auth_key_refresh_seconds),
        clock=SystemClock(),
        intake_options=IntakeOptions(
            notify_token_signer=NotifyTokenSigner(settings.notify_token_key_id,
                                                  settings.notify_token_secret.get_secret_value().encode()),
            notify_token_ttl_seconds=settings.notify_token_ttl_seconds,
            correlation_ttl_seconds=settings.correlation_ttl_seconds,
            correlation_id_secret=settings.correlation_id_secret.get_secret_value().encode(),
            max_lines_per_order=settings.max_lines_per_order,
            max_units_per_order=settings.max_units_per_order,
        ),
    )


_service: OrderService | None = None
_lock = threading.Lock()


def order_service() -> OrderService:
    """The process's order service, built from the environment on first use."""
    global _service
    if _service is None:
        with _lock:
            if _service is None:
                configure_telemetry("orders-functions")
                _service = build_order_service(OrderSettings())
                # The service and its clients live as long as the worker: out of every full collection's way.
                freeze_long_lived_objects("order service built")
    return _service
