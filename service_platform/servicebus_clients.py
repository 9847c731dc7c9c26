"""Async Service Bus clients from settings: a connection string locally, the process's workload identity in
Azure. Every publisher and receiver of every service gets its clients here; nothing connects before the
first send or receive."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field
from typing import Any

from service_platform.azure_identity import AsyncCredential, process_credential


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context for Service Bus: certificates checked against certifi's CA bundle, host
    names checked, as the SDK's own default.

    Left to itself, the SDK builds that context again for every AMQP connection it opens, and each session
    receiver is a connection of its own: loading the bundle cost about 26 ms of CPU each time, most of what
    taking a session cost (``docs/benchmarks.md``). A context is safe to share between connections.
    """
    import certifi

    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certifi.where())


@dataclass(frozen=True)
class ServiceBusClientFactory:
    """Makes ``azure.servicebus.aio.ServiceBusClient``s for one namespace; each owner closes its client.

    ``client_options`` go to every client (e.g. the SDK's retry settings). All identity-based clients share
    the one credential of the process (``service_platform.azure_identity``), and all clients the one TLS
    context (``tls_context``) unless the options bring their own CA bundle (``connection_verify``) or context.
    """

    connection_string: str | None = None
    fully_qualified_namespace: str | None = None
    client_id: str | None = None
    client_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.connection_string and not self.fully_qualified_namespace:
            raise ValueError("neither a Service Bus connection string nor a fully qualified namespace is set: set "
                             "ServiceBusConnection (local) or ServiceBusConnection__fullyQualifiedNamespace (Azure)")

    @property
    def endpoint(self) -> str:
        """Where it points, without secrets, for logs."""
        if self.fully_qualified_namespace:
            return self.fully_qualified_namespace
        for part in (self.connection_string or "").split(";"):
            key, _, value = part.partition("=")
            if key.strip().lower() == "endpoint":
                return value.strip()
        return "?"

    def __call__(self, **options: Any) -> Any:
        from azure.servicebus.aio import ServiceBusClient

        merged = {**self.client_options, **options}
        if "connection_verify" not in merged:
            merged.setdefault("ssl_context", tls_context())
        if self.connection_string:
            return ServiceBusClient.from_connection_string(self.connection_string, **merged)
        credential = AsyncCredential(process_credential(self.client_id))
        return ServiceBusClient(self.fully_qualified_namespace, credential, **merged)
