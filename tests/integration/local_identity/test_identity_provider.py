"""The development identity provider over HTTP: discovery, JWKS, the authorization code flow with PKCE the
order page uses, client credentials, and the refusals that keep it from handing tokens to the wrong party."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from local_identity.directory import (
    DEV_BACKEND_CLIENT_ID,
    DEV_BACKEND_CLIENT_SECRET,
    USERS,
)
from local_identity.embedded import serving_identity_provider

REDIRECT = "http://127.0.0.1:8080/"


@pytest.fixture
def idp(tmp_path: Path):
    with serving_identity_provider(tmp_path / "identity") as provider:
        yield provider


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(idp, challenge: str, user: str = "alice", redirect: str = REDIRECT) -> httpx.Response:
    return httpx.get(f"{idp.issuer}/authorize", params={
        "client_id": "orders-page", "response_type": "code", "redirect_uri": redirect, "state": "s-1",
        "code_challenge": challenge, "code_challenge_method": "S256", "user": user})


def test_discovery_names_the_issuer_and_a_jwks_with_the_signing_key(idp) -> None:
    document = httpx.get(f"{idp.issuer}/.well-known/openid-configuration").json()
    assert document["issuer"] == idp.issuer
    keys = httpx.get(document["jwks_uri"]).json()["keys"]
    assert [key["kid"] for key in keys] == [idp.keys.current.kid]
    assert all(key["kty"] == "RSA" and key["alg"] == "RS256" and "d" not in key for key in keys), "no private parts"


def test_the_authorization_code_flow_with_pkce_gives_the_customers_token(idp) -> None:
    verifier, challenge = pkce()
    redirected = authorize(idp, challenge)
    assert redirected.status_code == 302
    location = urlsplit(redirected.headers["location"])
    assert location.geturl().startswith(REDIRECT)
    query = parse_qs(location.query)
    assert query["state"] == ["s-1"]
    form = {"grant_type": "authorization_code", "code": query["code"][0], "code_verifier": verifier,
            "redirect_uri": REDIRECT, "client_id": "orders-page"}
    answer = httpx.post(f"{idp.issuer}/token", data=form)
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert claims["oid"] == USERS["alice"].object_id and claims["scp"] == "Orders.ReadWrite"
    again = httpx.post(f"{idp.issuer}/token", data=form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", "a code is used once"


def test_a_wrong_verifier_or_redirect_gets_no_token(idp) -> None:
    _, challenge = pkce()
    for verifier, redirect in ((secrets.token_urlsafe(48), REDIRECT), (None, "http://127.0.0.1:9999/")):
        code = parse_qs(urlsplit(authorize(idp, challenge).headers["location"]).query)["code"][0]
        answer = httpx.post(f"{idp.issuer}/token", data={
            "grant_type": "authorization_code", "code": code, "code_verifier": verifier or "x",
            "redirect_uri": redirect})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_codes_are_sent_only_to_loopback_redirects(idp) -> None:
    _, challenge = pkce()
    refused = authorize(idp, challenge, redirect="https://attacker.example/steal")
    assert refused.status_code == 400 and "loopback" in refused.text


def test_client_credentials_need_the_right_secret(idp) -> None:
    good = httpx.post(f"{idp.issuer}/token", data={"grant_type": "client_credentials",
                                                   "client_id": DEV_BACKEND_CLIENT_ID,
                                                   "client_secret": DEV_BACKEND_CLIENT_SECRET})
    claims = jwt.decode(good.json()["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["Orders.SubmitOnBehalf"] and "scp" not in claims and claims["idtyp"] == "app"
    bad = httpx.post(f"{idp.issuer}/token", data={"grant_type": "client_credentials",
                                                  "client_id": DEV_BACKEND_CLIENT_ID, "client_secret": "guess"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


def test_rotation_publishes_the_new_key_next_to_the_previous_one(idp, tmp_path) -> None:
    before = idp.keys.current.kid
    rotated = httpx.post(f"{idp.issuer}/rotate").json()
    assert rotated["published"] == [rotated["kid"], before]
    assert [k["kid"] for k in httpx.get(f"{idp.issuer}/keys").json()["keys"]] == [rotated["kid"], before]
    assert (tmp_path / "identity" / "signing-keys.json").stat().st_mode & 0o077 == 0, "private keys: owner only"
