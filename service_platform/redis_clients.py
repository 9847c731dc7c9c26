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


def redis_client(url: str, *, entra_auth: bool = False, timeout_seconds: float = 0.5,
                 connect_timeout_seconds: float | None = None, blocking: bool = False, **options: Any) -> Any:
    """A ``redis.asyncio.Redis`` on ``url`` (``redis.Redis`` with ``blocking=True``, for synchronous code);
    nothing connects before the first command."""
    if blocking:
        from redis import Redis
    else:
        from redis.asyncio import Redis  # type: ignore[assignment]

    settings: dict[str, Any] = {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": connect_timeout_seconds if connect_timeout_seconds is not None else timeout_seconds,
        "health_check_interval": 30,
        **options,
    }
    if entra_auth:
        settings["credential_provider"] = entra_credential_provider()
    return Redis.from_url(url, **settings)
