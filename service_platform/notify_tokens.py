"""Expiring tokens that let a client follow one order's status over the WebSocket service.

A token is ``<keyId>.<expires-unix-seconds>.<base64url HMAC-SHA256 of "<keyId>.<correlationId>.<expires>">``,
keyed with a secret the intake and the WebSocket service share. The key id lets the secret rotate: the
WebSocket service accepts the current and the previous key while the intake signs with the current one
(docs/websocket-service.md has the rollout). Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

#: The default of both services when NOTIFY_TOKEN_SECRET is not set, so tokens match in local work.
#: Never for deployment: the secret comes from Key Vault there.
DEV_NOTIFY_TOKEN_SECRET = "local-development-only-notify-secret"
DEFAULT_KEY_ID = "k1"

KEY_ID_PATTERN = r"[A-Za-z0-9_-]{1,32}"
# ASCII only, a bounded length per part: anything else is malformed before any decoding or comparison.
_TOKEN = re.compile(rf"({KEY_ID_PATTERN})\.([0-9]{{1,12}})\.([A-Za-z0-9_-]{{43}})", re.ASCII)
MAX_TOKEN_LENGTH = 128


class InvalidNotifyToken(Exception):
    """The token is missing, malformed, forged, expired or issued for another order; ``str()`` says which."""

    def __init__(self, reason: str, *, malformed: bool = False) -> None:
        super().__init__(reason)
        self.malformed = malformed


def _signature(secret: bytes, key_id: str, correlation_id: str, expires: int) -> str:
    digest = hmac.new(secret, f"{key_id}.{correlation_id}.{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class NotifyTokenSigner:
    """Issues tokens with the current key (the intake)."""

    def __init__(self, key_id: str, secret: bytes) -> None:
        if not secret:
            raise ValueError("the notify token secret is empty")
        if not re.fullmatch(KEY_ID_PATTERN, key_id, re.ASCII):
            raise ValueError(f"notify token key id {key_id!r} must be 1 to 32 letters, digits, '_' or '-'")
        self.key_id = key_id
        self._secret = secret

    def issue(self, correlation_id: str, ttl_seconds: int, now: float | None = None) -> str:
        """A token for ``correlation_id`` that expires ``ttl_seconds`` from ``now``."""
        expires = int((time.time() if now is None else now) + ttl_seconds)
        return f"{self.key_id}.{expires}.{_signature(self._secret, self.key_id, correlation_id, expires)}"


class NotifyTokenVerifier:
    """Checks tokens against every active key (the WebSocket service): ``{key id: secret}``."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys or not all(keys.values()):
            raise ValueError("at least one non-empty notify token secret is needed")
        self._keys = dict(keys)

    def verify(self, token: object, correlation_id: str, now: float | None = None) -> None:
        """Return if ``token`` is valid for ``correlation_id`` at ``now``; raise ``InvalidNotifyToken`` otherwise.

        Never raises anything else, whatever the token holds.
        """
        if not token:
            raise InvalidNotifyToken("token is missing", malformed=True)
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not (match := _TOKEN.fullmatch(token)):
            raise InvalidNotifyToken("token is malformed", malformed=True)
        key_id, expires_text, signature = match.groups()
        secret = self._keys.get(key_id)
        if secret is None:
            raise InvalidNotifyToken("token is signed with a key that is no longer accepted: place the order's "
                                     "status read again for a fresh token", malformed=True)
        expires = int(expires_text)
        if not hmac.compare_digest(signature, _signature(secret, key_id, correlation_id, expires)):
            raise InvalidNotifyToken("token does not match this correlationId")
        if (time.time() if now is None else now) >= expires:
            raise InvalidNotifyToken("token has expired")
