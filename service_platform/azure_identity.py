"""One Entra ID credential per process (workload identity on AKS), shared by every async Azure client.

Async azure-identity credentials keep an HTTP session bound to the event loop that first used them, while
this project's processes run Azure clients on more than one loop (the host's and a publisher's private
one). So the process holds one synchronous ``DefaultAzureCredential`` (thread-safe, with one token cache)
and hands each async client a thin adapter that asks it from a worker thread. ``close_process_credential``
is called once at shutdown.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

_credential: Any = None
_client_id: str | None = None
_lock = threading.Lock()


def process_credential(client_id: str | None = None) -> Any:
    """The process's ``azure.identity.DefaultAzureCredential``, made on first use (it connects only when a
    token is asked for). ``client_id`` picks a user-assigned identity; every caller must agree on it."""
    global _credential, _client_id
    with _lock:
        if _credential is None:
            from azure.identity import DefaultAzureCredential

            _credential = (DefaultAzureCredential(managed_identity_client_id=client_id) if client_id
                           else DefaultAzureCredential())
            _client_id = client_id
        elif client_id and client_id != _client_id:
            raise ValueError(f"this process already uses the identity {_client_id!r}; one identity per process")
        return _credential


def close_process_credential() -> None:
    global _credential, _client_id
    with _lock:
        credential, _credential, _client_id = _credential, None, None
    if credential is not None:
        credential.close()


class AsyncCredential:
    """``AsyncTokenCredential`` over the process credential: token requests run in a thread, so a blocking
    token refresh never stalls an event loop. Closing it leaves the shared credential open."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        return await asyncio.to_thread(self._credential.get_token_info, *scopes, options=options)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> "AsyncCredential":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass
