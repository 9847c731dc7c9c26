"""Clients from settings: Service Bus (one credential per process) and Redis (redis-entraid on request).

No Entra ID can be reached here; the tests check how the clients are built, never a token request.
"""

from __future__ import annotations

import pytest

from service_platform import azure_identity
from service_platform.backoff import Backoff, exponential_delay
from service_platform.redis_clients import redis_client
from service_platform.servicebus_clients import ServiceBusClientFactory


async def test_identity_clients_share_one_process_credential_closed_once():
    factory = ServiceBusClientFactory(fully_qualified_namespace="ns.servicebus.windows.net", client_id="app-1")
    first, second = factory(), factory()
    try:
        shared = azure_identity.process_credential()
        assert first._credential._credential is second._credential._credential is shared
        with pytest.raises(ValueError, match="one identity per process"):
            azure_identity.process_credential("another-app")
    finally:
        await first.close()
        await second.close()
        azure_identity.close_process_credential()
    assert azure_identity.process_credential() is not shared
    azure_identity.close_process_credential()


def test_a_factory_needs_a_connection_string_or_a_namespace():
    with pytest.raises(ValueError, match="ServiceBusConnection__fullyQualifiedNamespace"):
        ServiceBusClientFactory()
    assert ServiceBusClientFactory("Endpoint=sb://localhost:5682;SharedAccessKeyName=k;SharedAccessKey=s").endpoint \
        == "sb://localhost:5682"


async def test_redis_entra_auth_uses_redis_entraid_and_plain_urls_do_not():
    from redis_entraid.cred_provider import EntraIdCredentialsProvider

    plain = redis_client("redis://127.0.0.1:1/0")
    entra = redis_client("rediss://cache.example:10000/0", entra_auth=True)
    try:
        assert plain.connection_pool.connection_kwargs.get("credential_provider") is None
        assert isinstance(entra.connection_pool.connection_kwargs["credential_provider"], EntraIdCredentialsProvider)
        assert plain.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    finally:
        await plain.aclose()
        await entra.aclose()


def test_backoff_doubles_up_to_its_cap_and_resets():
    assert [exponential_delay(n, base=2, cap=120) for n in range(8)] == [2, 4, 8, 16, 32, 64, 120, 120]
    backoff = Backoff(initial=1, maximum=4, jitter=0)
    assert [backoff.next_delay() for _ in range(4)] == [1, 2, 4, 4]
    backoff.reset()
    assert backoff.next_delay() == 1
