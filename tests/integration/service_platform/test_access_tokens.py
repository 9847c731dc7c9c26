"""Bearer token validation against the real identity provider over HTTP (discovery, JWKS), with real RS256
keys: the attacks a token validator must refuse, bounded key fetching, and key rotation picked up live."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from local_identity.directory import BACKEND, USERS
from local_identity.embedded import EmbeddedIdentityProvider, serving_identity_provider
from local_identity.signing_keys import SigningKey
from local_identity.tokens import issue_access_token
from service_platform.access_tokens import AccessTokenValidator, IssuerUnavailable, TokenRejected

AUDIENCE = "api://orders"


@pytest.fixture
def idp(tmp_path: Path):
    with serving_identity_provider(tmp_path / "identity", audience=AUDIENCE) as provider:
        yield provider


def validator_for(idp: EmbeddedIdentityProvider, **options) -> AccessTokenValidator:
    return AccessTokenValidator(issuer=idp.issuer, audience=AUDIENCE, **options)


def token(idp: EmbeddedIdentityProvider, user: str = "alice", *, key: SigningKey | None = None, **options) -> str:
    options.setdefault("issuer", idp.issuer)
    options.setdefault("audience", AUDIENCE)
    return issue_access_token(key or idp.keys.current, USERS[user], client_id="orders-page", **options)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(idp: EmbeddedIdentityProvider) -> dict:
    now = int(time.time())
    return {"iss": idp.issuer, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600,
            "sub": "x", "oid": "mallory", "scp": "Orders.ReadWrite"}


async def test_a_customer_token_names_the_customer_and_its_scope(idp) -> None:
    identity = await validator_for(idp).validate_header(f"Bearer {token(idp, 'alice')}")
    assert identity.subject == USERS["alice"].object_id
    assert identity.scopes == {"Orders.ReadWrite"} and not identity.app_only


async def test_an_app_only_token_carries_roles_and_no_scope(idp) -> None:
    app_token = issue_access_token(idp.keys.current, BACKEND, issuer=idp.issuer, audience=AUDIENCE,
                                   client_id="orders-backend")
    identity = await validator_for(idp).validate(app_token)
    assert identity.app_only and identity.roles == {"Orders.SubmitOnBehalf"} and identity.scopes == set()


@pytest.mark.parametrize("header, error", [
    (None, "invalid_request"), ("", "invalid_request"), ("Basic YWxpY2U6cHc=", "invalid_request"),
    ("Bearer", "invalid_request"), ("Bearer not-a-jwt", "invalid_token"), ("Bearer " + "a" * 20_000, "invalid_token"),
])
async def test_missing_or_malformed_headers_are_refused(idp, header, error) -> None:
    with pytest.raises(TokenRejected) as refused:
        await validator_for(idp).validate_header(header)
    assert refused.value.error == error


@pytest.mark.parametrize("attack, complaint", [
    ("expired", "expired"),
    ("not yet valid", "not valid yet"),
    ("wrong issuer", "another issuer"),
    ("wrong audience", "another audience"),
    ("alg none", "'none' are not accepted"),
    ("HS256 with the public key", "'HS256' are not accepted"),
    ("self-signed key under a published kid", "signature does not verify"),
    ("self-signed key under its own kid", "key the issuer does not publish"),
    ("no kid", "names no signing key"),
    ("no subject claim", "lacks the claim 'oid'"),
    ("roles of the wrong type", "unexpected types"),
])
async def test_forged_and_misdirected_tokens_are_refused(idp, attack, complaint) -> None:
    kid = idp.keys.current.kid
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    match attack:
        case "expired":
            forged = token(idp, now=time.time() - 7200, lifetime_seconds=3600)
        case "not yet valid":
            forged = token(idp, now=time.time() + 3600)
        case "wrong issuer":
            forged = token(idp, issuer="https://login.example.com/other-tenant/v2.0")
        case "wrong audience":
            forged = token(idp, audience="api://another-api")
        case "alg none":
            forged = jwt.encode(claims(idp), None, algorithm="none", headers={"kid": kid})
        case "HS256 with the public key":
            # The classic confusion: HMAC keyed with the RSA public key a validator might hand to any algorithm.
            public_pem = idp.keys.current.private_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{b64(json.dumps(claims(idp)).encode())}"
            forged = f"{signing_input}.{b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())}"
        case "self-signed key under a published kid":
            forged = token(idp, key=SigningKey(kid, SigningKey.generate().private_key, 0))
        case "self-signed key under its own kid":
            forged = token(idp, key=SigningKey.generate())
        case "no kid":
            forged = jwt.encode(claims(idp), idp.keys.current.private_key, algorithm="RS256")
        case "no subject claim":
            forged = jwt.encode({k: v for k, v in claims(idp).items() if k != "oid"}, idp.keys.current.private_key,
                                algorithm="RS256", headers=header)
        case "roles of the wrong type":
            forged = jwt.encode({**claims(idp), "roles": "Orders.Admin"}, idp.keys.current.private_key,
                                algorithm="RS256", headers=header)
    with pytest.raises(TokenRejected, match=complaint) as refused:
        await validator_for(idp, leeway_seconds=5).validate(forged)
    assert refused.value.error == "invalid_token"


async def test_a_storm_of_unknown_kids_fetches_the_keys_at_most_once_per_interval(idp) -> None:
    validator = validator_for(idp, min_refresh_seconds=60)
    await validator.validate(token(idp))  # the first request fetches the keys
    assert idp.jwks_requests == 1
    storm = [token(idp, key=SigningKey(secrets.token_hex(8), idp.keys.current.private_key, 0)) for _ in range(300)]
    results = await asyncio.gather(*(validator.validate(t) for t in storm), return_exceptions=True)
    assert all(isinstance(r, TokenRejected) for r in results)
    assert idp.jwks_requests <= 2, "random kids must not make the validator hammer the issuer"
    await validator.validate(token(idp))  # real tokens still pass, from the cache
    assert idp.jwks_requests <= 2


async def test_valid_tokens_never_fetch_keys_per_request(idp) -> None:
    validator = validator_for(idp)
    for user in ("alice", "bob", "carol", "olivia") * 25:
        await validator.validate(token(idp, user))
    assert idp.jwks_requests == 1


async def test_a_rotated_signing_key_is_picked_up_without_a_restart(idp) -> None:
    validator = validator_for(idp, min_refresh_seconds=0)
    before = token(idp)
    await validator.validate(before)
    idp.keys.rotate()
    after = token(idp)
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    await validator.validate(after)  # the unknown kid triggers one refresh
    await validator.validate(before)  # the previous key stays published until its tokens expire
    assert idp.jwks_requests == 2


async def test_concurrent_first_requests_wait_for_the_one_key_fetch(idp) -> None:
    validator = validator_for(idp)
    identities = await asyncio.gather(*(validator.validate(token(idp)) for _ in range(50)))
    assert len(identities) == 50 and idp.jwks_requests == 1


async def test_an_issuer_that_does_not_answer_is_unavailable_not_a_rejection(tmp_path: Path) -> None:
    with serving_identity_provider(tmp_path / "identity", audience=AUDIENCE) as idp:
        forged_later = token(idp)
        issuer = idp.issuer
    validator = AccessTokenValidator(issuer=issuer, audience=AUDIENCE, fetch_timeout_seconds=1)
    with pytest.raises(IssuerUnavailable):
        await validator.validate(forged_later)


async def test_fetching_keys_does_not_block_the_event_loop(idp) -> None:
    validator = validator_for(idp)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await validator.validate(token(idp))
    task.cancel()
    assert ticks > 0


async def test_a_remembered_token_still_expires_and_a_changed_one_is_verified_again(idp) -> None:
    validator = validator_for(idp, leeway_seconds=0)
    # Claims are whole seconds: a 2-second token has between 1 and 2 seconds left when it is issued (a
    # 1-second one could expire before its first use).
    short = token(idp, lifetime_seconds=2)
    await validator.validate(short)
    await validator.validate(short)  # remembered
    tampered = short[:-2] + ("AA" if not short.endswith("AA") else "BB")
    with pytest.raises(TokenRejected, match="signature does not verify"):
        await validator.validate(tampered)
    time.sleep(2.1)
    with pytest.raises(TokenRejected, match="expired"):
        await validator.validate(short)
