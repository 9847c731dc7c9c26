"""Expiring tokens that let a client follow one order's status over the WebSocket service.

A token is ``<expires-unix-seconds>.<base64url HMAC-SHA256 of "<correlationId>.<expires>">`` keyed with a
secret shared by the intake and the WebSocket service. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


#: The default of both services when NOTIFY_TOKEN_SECRET is not set, so tokens match in local work.
#: Never for deployment: the secret comes from Key Vault there.
DEV_NOTIFY_TOKEN_SECRET = "local-development-only-notify-secret"


class InvalidNotifyToken(Exception):
    """The token is missing, malformed, forged, expired or issued for another order; ``str()`` says which."""


def _signature(secret: bytes, correlation_id: str, expires: int) -> str:
    digest = hmac.new(secret, f"{correlation_id}.{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_notify_token(secret: bytes, correlation_id: str, ttl_seconds: int, now: float | None = None) -> str:
    """A token for ``correlation_id`` that expires ``ttl_seconds`` from ``now``."""
    if not secret:
        raise ValueError("the notify token secret is empty")
    expires = int((time.time() if now is None else now) + ttl_seconds)
    return f"{expires}.{_signature(secret, correlation_id, expires)}"


def verify_notify_token(secret: bytes, token: str | None, correlation_id: str, now: float | None = None) -> None:
    """Return if ``token`` is valid for ``correlation_id`` at ``now``; raise ``InvalidNotifyToken`` otherwise."""
    if not token:
        raise InvalidNotifyToken("token is missing")
    expires_text, dot, signature = token.partition(".")
    if not dot or not expires_text.isdigit() or not signature:
        raise InvalidNotifyToken("token is malformed")
    expires = int(expires_text)
    if not hmac.compare_digest(signature, _signature(secret, correlation_id, expires)):
        raise InvalidNotifyToken("token does not match this correlationId")
    if (time.time() if now is None else now) >= expires:
        raise InvalidNotifyToken("token has expired")
