"""Service Bus connections named by a trigger's ``connection`` property, resolved like the Functions host.

``<name>`` (or ``AzureWebJobs<name>``) holding a connection string wins; otherwise
``<name>__fullyQualifiedNamespace`` selects an identity-based connection through azure-identity's
``DefaultAzureCredential`` (``<name>__clientId`` picks a user-assigned identity), as in Azure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service_platform.servicebus_clients import ServiceBusClientFactory

from .errors import HostConfigurationError


@dataclass(frozen=True)
class ServiceBusConnection:
    name: str
    connection_string: str | None = None
    fully_qualified_namespace: str | None = None
    client_id: str | None = None

    @property
    def endpoint(self) -> str:
        """Where it points, without secrets, for logs."""
        return self._factory(None).endpoint

    def _factory(self, options: dict[str, Any] | None) -> ServiceBusClientFactory:
        return ServiceBusClientFactory(self.connection_string, self.fully_qualified_namespace, self.client_id,
                                       client_options=options or {})

    def create_client(self, **kwargs: Any) -> Any:
        """A new ``azure.servicebus.aio.ServiceBusClient``; identity-based ones share the process's credential.

        Nothing connects before the first receive or send.
        """
        return self._factory(kwargs)()


def resolve_connection(name: str, settings: Mapping[str, str], *, function_name: str) -> ServiceBusConnection:
    for key in (name, f"AzureWebJobs{name}"):
        value = (settings.get(key) or "").strip()
        if value:
            if "endpoint=" not in value.lower():
                raise HostConfigurationError(
                    f"App setting {key!r} (connection of function {function_name!r}) is not a Service Bus "
                    "connection string (Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...). For an "
                    f"identity-based connection set {name}__fullyQualifiedNamespace instead."
                )
            return ServiceBusConnection(name=name, connection_string=value)
    namespace = _setting(settings, f"{name}__fullyQualifiedNamespace")
    if namespace:
        return ServiceBusConnection(
            name=name, fully_qualified_namespace=namespace, client_id=_setting(settings, f"{name}__clientId")
        )
    raise HostConfigurationError(
        f"Function {function_name!r} uses connection {name!r}, but neither app setting {name!r} (a connection "
        f"string) nor {name}__fullyQualifiedNamespace (with azure-identity) is set. Add one to the Values of "
        "local.settings.json or the environment."
    )


def _setting(settings: Mapping[str, str], key: str) -> str | None:
    value = settings.get(key)
    if value is None:
        # Some tools write the double underscore as ':' (the .NET configuration separator).
        value = settings.get(key.replace("__", ":"))
    return value.strip() if value and value.strip() else None
