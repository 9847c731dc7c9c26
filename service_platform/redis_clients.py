"""Async Redis clients with short timeouts; Entra ID authentication (redis-entraid) for Azure Managed Redis.

Redis only ever holds short-lived registry state in this system, never worth a long wait: callers pick
timeouts in the sub-second range and treat an error as "not known right now".
"""

from __future__ import annotations

from typing import Any

REDIS_SCOPE = "https://redis.azure.com/.default"


def entra_credential_provider() -> Any:
    """Tokens of the workload identity as Redis credentials, renewed before they expire."""
    from redis_entraid.cred_provider import create_from_default_azure_credential

    return create_from_default_azure_credential((REDIS_SCOPE,))


# Connections per client. Past them a command waits (up to its timeout) for one to come free: redis-py's
# plain pool raises MaxConnectionsError at once instead (its default is 100 since redis-py 8), which under a
# burst of concurrent commands looked like a Redis outage.
MAX_CONNECTIONS = 100


def redis_client(url: str, *, entra_auth: bool = False, timeout_seconds: float = 0.5,
                 connect_timeout_seconds: float | None = None, blocking: bool = False,
                 max_connections: int = MAX_CONNECTIONS, **options: Any) -> Any:
    """A ``redis.asyncio.Redis`` on ``url`` (``redis.Redis`` with ``blocking=True``, for synchronous code);
    nothing connects before the first command. At most ``max_connections`` at once; a command beyond them
    waits up to ``timeout_seconds`` for a free one, then fails with ``ConnectionError``."""
    if blocking:
        from redis import BlockingConnectionPool, Redis
    else:
        from redis.asyncio import BlockingConnectionPool, Redis  # type: ignore[assignment]

    settings: dict[str, Any] = {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": connect_timeout_seconds if connect_timeout_seconds is not None else timeout_seconds,
        "health_check_interval": 30,
        **options,
    }
    if entra_auth:
        settings["credential_provider"] = entra_credential_provider()
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout_seconds, **settings)
    return Redis.from_pool(pool)
