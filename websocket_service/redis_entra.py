"""Entra ID authentication to Azure Cache for Redis (``REDIS_ENTRA_AUTH=true``).

The username is the identity's object id (the token's ``oid`` claim) and the password the access token
itself. Tokens are cached until five minutes before they expire; every new connection authenticates with
a fresh enough one, and the registry's health checks reconnect connections whose token has lapsed.
"""

from __future__ import annotations

import base64
import json
import time

from redis.credentials import CredentialProvider

REDIS_SCOPE = "https://redis.azure.com/.default"


def _object_id(token: str) -> str:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims.get("oid") or claims["sub"])


class EntraIdRedisCredentials(CredentialProvider):
    def __init__(self, credential: object | None = None) -> None:
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self._credential = credential
        self._cached: tuple[str, str] | None = None
        self._expires_on = 0.0

    def get_credentials(self) -> tuple[str, str]:
        if self._cached is None:
            raise RuntimeError("Entra ID credentials are only fetched asynchronously; use redis.asyncio")
        return self._cached

    async def get_credentials_async(self) -> tuple[str, str]:
        if self._cached is None or time.time() > self._expires_on - 300:
            token = await self._credential.get_token(REDIS_SCOPE)  # type: ignore[attr-defined]
            self._cached = (_object_id(token.token), token.token)
            self._expires_on = float(token.expires_on)
        return self._cached

    async def aclose(self) -> None:
        await self._credential.close()  # type: ignore[attr-defined]
