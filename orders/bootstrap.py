"""Composition root: the only place that reads settings and builds adapters.

The Functions worker imports the app just to index it, so nothing here connects at import time: the
services are built on first use, once per process, and every client connects lazily.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine, text

from orders.adapters.azure_clients import redis_client, servicebus_client_factory
from orders.adapters.clock import SystemClock
from orders.adapters.redis_correlation_registry import RedisCorrelationRegistry
from orders.adapters.servicebus_messaging import ServiceBusOrderPublisher, ServiceBusStatusEventPublisher
from orders.adapters.servicebus_publisher import ServiceBusPublisher
from orders.adapters.sql import SqlUnitOfWork, create_engine_for
from orders.domain.ports import UnitOfWorkFactory
from orders.service_layer.handlers import IntakeOptions
from orders.settings import OrderSettings


@dataclass
class Services:
    """Everything the triggers hand to the handlers."""

    settings: OrderSettings
    engine: Engine
    uow_factory: UnitOfWorkFactory
    order_publisher: ServiceBusOrderPublisher
    status_publisher: ServiceBusStatusEventPublisher
    registry: RedisCorrelationRegistry
    clock: SystemClock
    intake_options: IntakeOptions

    def check_sql(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))


def build_services(settings: OrderSettings) -> Services:
    client_factory = servicebus_client_factory(
        settings.servicebus_connection.get_secret_value() if settings.servicebus_connection else None,
        settings.servicebus_namespace, settings.azure_client_id)
    engine = create_engine_for(settings)
    return Services(
        settings=settings,
        engine=engine,
        uow_factory=SqlUnitOfWork.factory(engine),
        order_publisher=ServiceBusOrderPublisher(ServiceBusPublisher(client_factory, settings.orders_queue)),
        status_publisher=ServiceBusStatusEventPublisher(client_factory, settings.order_status_queue),
        registry=RedisCorrelationRegistry(redis_client(settings.redis_url, entra_auth=settings.redis_entra_auth)),
        clock=SystemClock(),
        intake_options=IntakeOptions(
            notify_token_secret=settings.notify_token_secret.get_secret_value().encode(),
            notify_token_ttl_seconds=settings.notify_token_ttl_seconds,
            notify_public_url=settings.notify_public_url,
            correlation_ttl_seconds=settings.correlation_ttl_seconds,
        ),
    )


_services: Services | None = None
_lock = threading.Lock()


def services() -> Services:
    """The process's services, built from the environment on first use."""
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = build_services(OrderSettings())
    return _services
