"""Access tokens a service presents when it calls the order API itself (the WebSocket service reading an
order's status), as an ``httpx.Auth``.

In Azure the token comes from the workload identity (``azure-identity``, scope ``api://…/.default``); locally
from the development identity provider's client-credentials grant. Either is fetched once and reused until
five minutes before it expires; a ``401`` refreshes it once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Protocol

import httpx

from service_platform.azure_identity import AsyncCredential, process_credential

REFRESH_MARGIN_SECONDS = 300


class TokenSource(Protocol):
    async def fetch(self) -> tuple[str, float]:
        """A fresh access token and the Unix time it expires at."""


class WorkloadIdentityTokens:
    """Tokens for ``scope`` from the process's ``DefaultAzureCredential`` (workload identity in AKS)."""

    def __init__(self, scope: str, client_id: str | None = None) -> None:
        self._scope = scope
        self._credential = AsyncCredential(process_credential(client_id))

    async def fetch(self) -> tuple[str, float]:
        token = await self._credential.get_token(self._scope)
        return token.token, float(token.expires_on)


class ClientCredentialsTokens:
    """OAuth 2.0 client credentials (RFC 6749 §4.4) at ``token_url``."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str | None = None) -> None:
        self._form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        if scope:
            self._form["scope"] = scope
        self._token_url = token_url

    async def fetch(self) -> tuple[str, float]:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.post(self._token_url, data=self._form)
        if response.status_code != 200:
            raise httpx.HTTPStatusError(f"token endpoint {self._token_url} answered {response.status_code}: "
                                        f"{response.text[:200]}", request=response.request, response=response)
        body = response.json()
        return body["access_token"], time.time() + float(body.get("expires_in", 3600))


class BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer`` from a ``TokenSource``; one fetch at a time, reused until near expiry."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source
        self._token: str | None = None
        self._expires = 0.0
        self._lock: asyncio.Lock | None = None

    async def _current(self, *, renew: bool = False) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if renew or self._token is None or time.time() > self._expires - REFRESH_MARGIN_SECONDS:
                self._token, self._expires = await self._source.fetch()
            return self._token

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self._current()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self._current(renew=True)}"
            yield request
