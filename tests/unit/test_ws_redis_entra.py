"""Entra ID authentication to Redis: token as password, its object id as user name."""

from __future__ import annotations

import json


async def test_entra_redis_credentials_use_the_token_and_its_object_id() -> None:
    """A stand-in credential (no Entra ID here) handing out a JWT-shaped token."""
    import base64
    from types import SimpleNamespace

    from websocket_service.redis_entra import REDIS_SCOPE, EntraIdRedisCredentials

    claims = base64.urlsafe_b64encode(json.dumps({"oid": "object-1"}).encode()).rstrip(b"=").decode()
    token = f"h.{claims}.s"

    class FakeCredential:
        scopes: list[str] = []
        closed = False

        async def get_token(self, scope: str):
            self.scopes.append(scope)
            return SimpleNamespace(token=token, expires_on=4_000_000_000)

        async def close(self) -> None:
            self.closed = True

    credential = FakeCredential()
    provider = EntraIdRedisCredentials(credential)
    assert await provider.get_credentials_async() == ("object-1", token)
    assert await provider.get_credentials_async() == ("object-1", token)
    assert credential.scopes == [REDIS_SCOPE], "a token is reused until shortly before it expires"
    await provider.aclose()
    assert credential.closed
