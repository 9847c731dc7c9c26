"""Where the operator's access token comes from: given, the development identity provider, or Entra ID."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from dead_letter_admin.api import ApiError

LOCAL_IDENTITY_URL = "http://127.0.0.1:7075"
LOCAL_OPERATOR = "olivia"


def token_source(*, api_url: str, token: str | None, dev_identity_url: str | None, dev_user: str,
                 scope: str | None) -> Callable[[], str]:
    """A callable that returns a valid token, renewing it before it expires when it can."""
    if token:
        return lambda: token
    if dev_identity_url is None and scope is None and urlsplit(api_url).hostname in ("127.0.0.1", "localhost"):
        dev_identity_url = LOCAL_IDENTITY_URL
    if dev_identity_url is not None:
        return _development(dev_identity_url, dev_user)
    if scope is None:
        raise ApiError("no token: pass --token (or ORDERS_ADMIN_TOKEN), or --scope api://<API app id>/.default "
                       "(or ORDERS_API_SCOPE) to sign in with Entra ID (az login, workload or managed identity)")
    return _entra(scope)


def _development(identity_url: str, user: str) -> Callable[[], str]:
    from local_identity.client import development_token

    cached: dict[str, str] = {}

    def token() -> str:
        if "token" not in cached:
            try:
                cached["token"] = development_token(identity_url, user)
            except Exception as error:  # noqa: BLE001 - any failure means the same thing to the operator
                raise ApiError(f"the development identity provider at {identity_url} gave no token for {user!r} "
                               f"({error}); is the local system running (scripts/run)?") from None
        return cached["token"]

    return token


def _entra(scope: str) -> Callable[[], str]:
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    cached: dict[str, object] = {}

    def token() -> str:
        expires_on = cached.get("expires_on", 0)
        if not isinstance(expires_on, int) or expires_on - 120 < time.time():
            access = credential.get_token(scope)
            cached.update(token=access.token, expires_on=access.expires_on)
        return str(cached["token"])

    return token
