"""The ports the service layer talks through; adapters implement them, tests use ``Fake*`` stand-ins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from websocket_service.core import RegistryEntry, StatusEvent


class RegistryUnavailable(Exception):
    """The correlation registry cannot be reached right now."""


class StatusUnavailable(Exception):
    """The status API cannot answer right now."""


class SocketHolderRegistry(Protocol):
    """Which instances hold subscribers of an order (short-lived, refreshed while sockets live)."""

    async def register(self, correlation_ids: Sequence[str]) -> bool:
        """Record this instance for each id; False (logged by the adapter) when the registry is down."""
        ...

    async def deregister(self, correlation_ids: Sequence[str]) -> bool: ...

    async def lookup(self, correlation_ids: Sequence[str]) -> dict[str, list[RegistryEntry]]:
        """Entries per id; raises ``RegistryUnavailable``."""
        ...

    async def ping(self) -> bool: ...

    async def started_at(self) -> float:
        """When the registry's current contents began (Unix time): a Redis that restarted empty starts
        again, and until every instance re-registered, "no entry" does not mean "nobody follows it".
        Raises ``RegistryUnavailable``."""
        ...

    async def aclose(self) -> None: ...


class StatusReader(Protocol):
    async def current(self, correlation_id: str) -> StatusEvent | None:
        """The order's current status, None for an unknown order; raises ``StatusUnavailable``."""
        ...

    async def aclose(self) -> None: ...


class EventForwarder(Protocol):
    async def forward(self, internal_url: str, events: Sequence[StatusEvent]) -> bool:
        """Hand events to another instance; False (quickly) when it cannot be reached."""
        ...

    async def aclose(self) -> None: ...


EventBatchHandler = Callable[[Sequence[tuple[StatusEvent, int]]], Awaitable[list[str]]]
"""Takes (event, attempt) pairs (the delivery count, plus the times it was already routed again), returns a
``Disposition`` for each, in order."""


class StatusConsumer(Protocol):
    """Competing consumer of the status queue."""

    @property
    def connected(self) -> bool: ...

    async def run(self, handle: EventBatchHandler) -> None:
        """Receive until cancelled, reconnecting on failures."""
        ...


def unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))
