"""Validation of OAuth 2.0 bearer tokens (RFC 6750) issued by Entra ID, or locally by ``local_identity``.

PyJWT checks the signature and the registered claims; this module decides which keys are trusted:

- keys come from the issuer's JWKS (located through its OIDC discovery document unless given), fetched once
  and kept; a token with an unknown ``kid`` triggers a refresh, at most one per ``min_refresh_seconds`` so
  that a flood of made-up kids cannot hammer the issuer;
- the fetch runs in a worker thread, never on the event loop, and never per request;
- only RS256 is accepted: no ``none``, and no HS256 signed with the public key (the key type decides);
- a token already verified is remembered (the exact string, until it expires; at most ``cache_size``), so a
  client presenting its token on every request pays for the signature check once.

PyJWT checks each base64url segment one character at a time in a Python generator, which took half of a
first-sight validation's CPU; ``_SegmentCheckingJWS`` makes the same check with one compiled pattern.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt.exceptions import DecodeError

log = logging.getLogger("service_platform.access_tokens")

ALGORITHMS = ("RS256",)
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub")
MAX_TOKEN_LENGTH = 16 * 1024


class TokenRejected(Exception):
    """The request cannot be authenticated (``401``). ``error`` is the RFC 6750 code for ``WWW-Authenticate``."""

    def __init__(self, description: str, *, error: str = "invalid_token") -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class IssuerUnavailable(Exception):
    """No signing keys could be fetched from the issuer yet (``503``): nothing can be validated."""


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """What a valid token says about its caller."""

    subject: str  # the configured customer claim (default ``oid``)
    scopes: frozenset[str]  # ``scp``: delegated permissions of a user's token
    roles: frozenset[str]  # ``roles``: app roles (of a user or of an application)
    app_only: bool  # no ``scp``: an application calling on its own behalf
    claims: Mapping[str, Any]


_SEGMENT = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, only to pick the algorithm and key: PyJWT verifies the whole token afterwards.

    (Read here rather than with ``jwt.get_unverified_header``, which would decode the token a second time;
    PyJWT's decoding is most of a validation's CPU.)
    """
    segment = token.split(".", 1)[0]
    if token.count(".") != 2 or not _SEGMENT.fullmatch(segment):
        raise TokenRejected("the token is not a JWT")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise TokenRejected("the token is not a JWT") from None
    if not isinstance(header, dict):
        raise TokenRejected("the token is not a JWT")
    return header


_BASE64URL_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*(?:={1,2})?", re.ASCII)


def _decode_segment(segment: bytes, name: str) -> bytes:
    """One segment of a compact JWS, with PyJWS's rules: the base64url alphabet only, at most two ``=``
    and only to complete the last quantum, and the canonical encoding (no stray bits in the last character)."""
    if not _BASE64URL_SEGMENT.fullmatch(segment):
        raise DecodeError(f"Invalid {name} padding")
    stripped = segment.rstrip(b"=")
    if (stripped != segment and len(segment) % 4) or len(stripped) % 4 == 1:
        raise DecodeError(f"Invalid {name} padding")
    try:
        decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except binascii.Error as error:
        raise DecodeError(f"Invalid {name} padding") from error
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
        raise DecodeError(f"Invalid {name} padding")
    return decoded


class _SegmentCheckingJWS(jwt.PyJWS):
    """PyJWS with its segment decoding replaced by ``_decode_segment`` (same accepted set, see the unit test
    that compares both on crafted segments); everything else, signature included, is PyJWT's."""

    _decode_base64url_segment = staticmethod(_decode_segment)


def _jwt_decoder() -> jwt.PyJWT:
    decoder = jwt.PyJWT()
    decoder._jws = _SegmentCheckingJWS(options=decoder._jws.options)  # noqa: SLF001 - the one seam PyJWT has
    return decoder


_DECODER = _jwt_decoder()


class AccessTokenValidator:
    def __init__(self, *, issuer: str, audience: str, jwks_url: str | None = None, subject_claim: str = "oid",
                 leeway_seconds: float = 60.0, min_refresh_seconds: float = 30.0,
                 max_key_age_seconds: float = 24 * 3600.0, fetch_timeout_seconds: float = 5.0,
                 cache_size: int = 10_000) -> None:
        self.issuer = issuer  # compared exactly, as the token's iss must match
        self.audience = audience
        self.subject_claim = subject_claim
        self._jwks_url = jwks_url
        self._leeway = leeway_seconds
        self._min_refresh = min_refresh_seconds
        self._max_key_age = max_key_age_seconds
        self._timeout = fetch_timeout_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._attempted_at = float("-inf")
        self._refresh_lock = threading.Lock()
        self._refreshing = 0
        self._verified: OrderedDict[str, tuple[TokenIdentity, float]] = OrderedDict()
        self._cache_size = cache_size

    # ------------------------------------------------------------------ validation
    async def validate_header(self, authorization: str | None) -> TokenIdentity:
        """The identity in an ``Authorization: Bearer <token>`` header value."""
        if not authorization:
            raise TokenRejected("no access token: send Authorization: Bearer <token>", error="invalid_request")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("the Authorization header must be 'Bearer <token>'", error="invalid_request")
        return await self.validate(token.strip())

    async def validate(self, token: str) -> TokenIdentity:
        remembered = self._verified.get(token)
        if remembered is not None:
            identity, expires = remembered
            if time.time() < expires + self._leeway:
                self._verified.move_to_end(token)
                return identity
            del self._verified[token]
        identity = await self._verify(token)
        self._verified[token] = (identity, float(identity.claims["exp"]))
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return identity

    async def _verify(self, token: str) -> TokenIdentity:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected("the token is too long")
        header = _unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRejected(f"tokens signed with {str(algorithm)[:16]!r} are not accepted; only RS256 is")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token names no signing key (kid)")
        key = self._keys.get(kid)
        if key is None or self._keys_are_old():
            # Requests that arrive while a fetch is under way wait for it rather than fail.
            if self._may_refresh() or self._refreshing:
                self._refreshing += 1
                try:
                    await asyncio.to_thread(self._refresh)
                finally:
                    self._refreshing -= 1
            key = self._keys.get(kid)
        if key is None:
            if not self._keys:
                raise IssuerUnavailable(f"no signing keys from {self.issuer} yet")
            raise TokenRejected("the token is signed with a key the issuer does not publish")
        return self._decode(token, key)

    def _decode(self, token: str, key: jwt.PyJWK) -> TokenIdentity:
        try:
            claims = _DECODER.decode(token, key.key, algorithms=list(ALGORITHMS), audience=self.audience,
                                issuer=self.issuer, leeway=self._leeway,
                                options={"require": [*REQUIRED_CLAIMS, self.subject_claim]})
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired: get a new one") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(f"the token is for another audience; this API is {self.audience}") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("the token comes from another issuer") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenRejected(f"the token lacks the claim {error.claim!r}") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("the token's signature does not verify") from None
        except jwt.PyJWTError as error:
            raise TokenRejected(f"the token is invalid: {type(error).__name__}") from None
        subject = claims.get(self.subject_claim)
        scp = claims.get("scp")
        roles = claims.get("roles", [])
        if not isinstance(subject, str) or not subject or (scp is not None and not isinstance(scp, str)) \
                or not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise TokenRejected("the token's claims have unexpected types")
        return TokenIdentity(subject=subject, scopes=frozenset((scp or "").split()), roles=frozenset(roles),
                             app_only=scp is None, claims=claims)

    # ------------------------------------------------------------------ keys
    def _keys_are_old(self) -> bool:
        return time.monotonic() - self._fetched_at > self._max_key_age

    def _may_refresh(self) -> bool:
        return time.monotonic() - self._attempted_at >= self._min_refresh

    def _refresh(self) -> None:
        """Fetch the JWKS (in a worker thread); one fetch at a time, the others find it done."""
        with self._refresh_lock:
            if not self._may_refresh():
                return  # fetched (or tried) while this call waited for the lock
            self._attempted_at = time.monotonic()
            try:
                with httpx.Client(timeout=self._timeout) as client:
                    jwks_url = self._jwks_url or self._discover(client)
                    response = client.get(jwks_url)
                    response.raise_for_status()
                    key_set = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWTError) as error:
                log.warning("signing keys not refreshed from %s: %s", self.issuer, error,
                            extra={"error": type(error).__name__})
                return
            keys = {key.key_id: key for key in key_set.keys if key.key_id and key.key_type == "RSA"}
            added = sorted(set(keys) - set(self._keys))
            self._keys, self._fetched_at = keys, time.monotonic()
            log.info("signing keys refreshed", extra={"issuer": self.issuer, "kids": sorted(keys), "added": added})

    def _discover(self, client: httpx.Client) -> str:
        response = client.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")
        response.raise_for_status()
        self._jwks_url = str(response.json()["jwks_uri"])
        return self._jwks_url
