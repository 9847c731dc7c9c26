"""Clients for Service Bus and Redis, built from settings: a connection string locally, the workload
identity (azure-identity) in Azure. Nothing connects until first use."""

from __future__ import annotations

from collections.abc import Callable

from azure.servicebus.aio import ServiceBusClient
from redis.asyncio import Redis

REDIS_SCOPE = "https://redis.azure.com/.default"
# The SDK's default retries can hold a request for half a minute; intake must rather answer 503 quickly
# (nothing was accepted, the client retries) and processing is retried by redelivery anyway.
RETRY_OPTIONS = {"retry_total": 2, "retry_backoff_factor": 0.5, "retry_backoff_max": 4}


def servicebus_client_factory(connection_string: str | None, namespace: str | None,
                              client_id: str | None = None) -> Callable[[], ServiceBusClient]:
    """A factory of async ``ServiceBusClient``s; each publisher or receiver owns one."""
    if connection_string:
        return lambda: ServiceBusClient.from_connection_string(connection_string, **RETRY_OPTIONS)
    if not namespace:
        raise ValueError("neither a Service Bus connection string nor a fully qualified namespace is set")

    def with_identity() -> ServiceBusClient:
        from azure.identity.aio import DefaultAzureCredential

        return ServiceBusClient(namespace, DefaultAzureCredential(managed_identity_client_id=client_id), **RETRY_OPTIONS)

    return with_identity


def redis_client(url: str, *, entra_auth: bool = False, timeout_seconds: float = 0.5) -> Redis:
    """An async Redis client with short timeouts: Redis is a best-effort registry, never worth a long wait."""
    options: dict[str, object] = {"socket_timeout": timeout_seconds, "socket_connect_timeout": timeout_seconds,
                                  "health_check_interval": 30}
    if entra_auth:
        from redis_entraid.cred_provider import create_from_default_azure_credential

        options["credential_provider"] = create_from_default_azure_credential((REDIS_SCOPE,))
    return Redis.from_url(url, **options)
