"""Access tokens shaped like Entra ID v2.0 tokens, signed with PyJWT."""

from __future__ import annotations

import secrets
import time

import jwt

from local_identity.directory import DEV_TENANT_ID, Principal
from local_identity.signing_keys import SigningKey

DEFAULT_TOKEN_LIFETIME_SECONDS = 3600


def issue_access_token(key: SigningKey, principal: Principal, *, issuer: str, audience: str, client_id: str,
                       lifetime_seconds: int = DEFAULT_TOKEN_LIFETIME_SECONDS, now: float | None = None) -> str:
    """A signed token for ``principal``: ``scp`` for a user's delegated token, ``roles`` for app roles,
    ``idtyp: app`` and no ``scp`` for an app-only token, as Entra ID issues them."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": issuer, "aud": audience, "iat": issued, "nbf": issued, "exp": issued + lifetime_seconds,
        "sub": principal.object_id, "oid": principal.object_id, "tid": DEV_TENANT_ID, "azp": client_id,
        "ver": "2.0", "uti": secrets.token_urlsafe(16),
    }
    if principal.app_only:
        claims["idtyp"] = "app"
    else:
        claims["scp"] = " ".join(principal.scopes)
        claims["name"] = principal.display_name
        claims["preferred_username"] = f"{principal.name}@orders.local"
    if principal.roles:
        claims["roles"] = list(principal.roles)
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"})
