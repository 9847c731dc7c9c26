"""Getting a token from a running development identity provider: a user's (password grant, for curl and
tests) or an application's (client credentials; the backend's by default)."""

from __future__ import annotations

import httpx

from local_identity.directory import DEV_BACKEND_CLIENT_ID, DEV_BACKEND_CLIENT_SECRET


def development_token(identity_url: str, user: str | None = None, *, client_id: str = DEV_BACKEND_CLIENT_ID,
                      client_secret: str = DEV_BACKEND_CLIENT_SECRET) -> str:
    """An access token of development user ``user``, or of the client ``client_id`` when no user is given.

    Raises ``httpx.HTTPError`` when the provider does not answer or refuses.
    """
    form = ({"grant_type": "password", "username": user} if user else
            {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})
    response = httpx.post(f"{identity_url}/token", data=form, timeout=10)
    response.raise_for_status()
    return str(response.json()["access_token"])
