"""Composition root: the only place settings are read and adapters are chosen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import httpx

from service_platform.azure_identity import close_process_credential
from service_platform.api_tokens import BearerAuth, ClientCredentialsTokens, WorkloadIdentityTokens
from service_platform.heap import freeze_long_lived_objects
from service_platform.notify_tokens import NotifyTokenVerifier
from websocket_service.forwarder import HttpEventForwarder
from websocket_service.gateway import SocketGateway, SocketLimits
from websocket_service.notifier import StatusNotifier
from websocket_service.ports import EventForwarder, RegistryUnavailable, SocketHolderRegistry, StatusConsumer, StatusReader
from websocket_service.redis_socket_holders import RedisSocketHolderRegistry
from websocket_service.settings import DEV_INTERNAL_SECRET, DEV_NOTIFY_TOKEN_SECRET, WebSocketSettings
from websocket_service.status_api import StatusApiClient

log = logging.getLogger("websocket_service.bootstrap")

EPOCH_CHECK_SECONDS = 1.0


@dataclass
class Services:
    """The wired service; ``start``/``stop`` run its background loops (consumer, registry refresh)."""

    settings: WebSocketSettings
    notifier: StatusNotifier
    registry: SocketHolderRegistry
    status_reader: StatusReader
    forwarder: EventForwarder
    consumer: StatusConsumer | None
    api_client: httpx.AsyncClient | None
    gateway: SocketGateway
    shutting_down: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.consumer is not None:
            self._tasks.append(loop.create_task(self.consumer.run(self.notifier.handle_queue_events)))
        else:
            log.warning("no ServiceBusConnection configured: status events are not consumed by this instance")
        self._tasks.append(loop.create_task(self._refresh_registrations()))
        # What the instance keeps for its lifetime (clients, the app, the libraries) is out of the way of every
        # full garbage collection; sockets and events come and go as before (service_platform.heap says why).
        freeze_long_lived_objects("WebSocket service started")
        log.info("started", extra={"instanceId": self.settings.instance_id,
                                    "internalUrl": self.settings.advertised_internal_url})

    async def _refresh_registrations(self) -> None:
        """Every third of the TTL, and at once when Redis came back empty (its epoch changed), after a refresh
        failed, or after a subscribe could not register its order: the registry must know who holds which
        socket again before events go missing."""
        interval = self.settings.registry_ttl_seconds / 3
        known_epoch: float | None = None
        due = time.monotonic() + interval
        while True:
            await asyncio.sleep(EPOCH_CHECK_SECONDS)
            try:
                epoch = await self.registry.started_at()
            except RegistryUnavailable:
                self.notifier.registrations_pending = True  # everything is re-registered once it answers
                continue
            came_back_empty = known_epoch is not None and epoch != known_epoch
            if came_back_empty:
                log.warning("the registry came back empty; registering every followed order again")
            if self.notifier.registrations_pending or came_back_empty or time.monotonic() >= due:
                await self.notifier.refresh_registrations()
                due = time.monotonic() + interval
            known_epoch = epoch

    async def stop(self) -> None:
        self.shutting_down = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.notifier.deregister_all()
        for closable in (self.registry, self.status_reader, self.forwarder):
            with contextlib.suppress(Exception):
                await closable.aclose()
        if self.api_client is not None:
            await self.api_client.aclose()
        close_process_credential()  # the status consumer's identity-based clients shared it
        log.info("stopped", extra={"instanceId": self.settings.instance_id})


def _status_api_auth(settings: WebSocketSettings) -> httpx.Auth | None:
    if settings.status_api_scope:
        return BearerAuth(WorkloadIdentityTokens(settings.status_api_scope, settings.azure_client_id))
    if settings.status_api_token_url and settings.status_api_client_id and settings.status_api_client_secret:
        return BearerAuth(ClientCredentialsTokens(settings.status_api_token_url, settings.status_api_client_id,
                                                  settings.status_api_client_secret.get_secret_value()))
    log.warning("neither STATUS_API_SCOPE nor STATUS_API_TOKEN_URL is set: status reads go without a token and "
                "an API that requires sign-in refuses them")
    return None


def bootstrap(
    settings: WebSocketSettings | None = None,
    *,
    registry: SocketHolderRegistry | None = None,
    status_reader: StatusReader | None = None,
    forwarder: EventForwarder | None = None,
    consumer: StatusConsumer | None = None,
) -> Services:
    """Wire the service from ``settings`` (the environment when None); any port may be overridden."""
    settings = settings or WebSocketSettings()
    if settings.notify_token_secret.get_secret_value() == DEV_NOTIFY_TOKEN_SECRET or \
            settings.internal_secret.get_secret_value() == DEV_INTERNAL_SECRET:
        log.warning("running with the development default of NOTIFY_TOKEN_SECRET or WS_INTERNAL_SECRET: "
                    "set both from a secret store anywhere but on a laptop")
    if registry is None:
        registry = RedisSocketHolderRegistry.from_url(
            settings.redis_url, entra_auth=settings.redis_entra_auth, instance_id=settings.instance_id,
            internal_url=settings.advertised_internal_url, ttl_seconds=settings.registry_ttl_seconds,
            prefix=settings.registry_prefix)
    status_reader = status_reader or StatusApiClient.create(settings.status_api_url,
                                                            settings.status_api_timeout_seconds,
                                                            auth=_status_api_auth(settings))
    forwarder = forwarder or HttpEventForwarder.create(settings.internal_secret.get_secret_value(),
                                                       settings.forward_timeout_seconds)
    if consumer is None and settings.servicebus_configured:
        from websocket_service.servicebus_consumer import ServiceBusStatusConsumer

        connection = settings.servicebus_connection.get_secret_value() if settings.servicebus_connection else None
        consumer = ServiceBusStatusConsumer.from_settings(connection, settings.servicebus_namespace,
                                                          settings.order_status_queue)
    api_client = None
    if settings.proxy_api:
        api_client = httpx.AsyncClient(base_url=settings.status_api_url.rstrip("/") + "/", timeout=10.0)
    notifier = StatusNotifier(instance_id=settings.instance_id, registry=registry, status_reader=status_reader,
                              forwarder=forwarder)
    gateway = SocketGateway(
        notifier, NotifyTokenVerifier(settings.notify_token_keys),
        max_subscriptions=settings.max_subscriptions, send_queue_limit=settings.send_queue_limit,
        heartbeat_seconds=settings.heartbeat_seconds, per_message_deflate=settings.per_message_deflate,
        limits=SocketLimits(max_connections=settings.max_connections,
                            max_connections_per_client=settings.max_connections_per_client,
                            idle_seconds=settings.idle_seconds,
                            max_frames_per_window=settings.max_frames_per_10s,
                            client_address_header=settings.client_address_header or None))
    return Services(settings=settings, notifier=notifier, registry=registry, status_reader=status_reader,
                    forwarder=forwarder, consumer=consumer, api_client=api_client, gateway=gateway)
