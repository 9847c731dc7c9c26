"""The public surface under attack, against the whole system as real processes (identity provider, broker,
Redis, SQLite, local Functions host, WebSocket service): every attack gets its documented 4xx, never a 5xx.

Tokens for the forgeries are signed with the identity provider's real keys, read from its data directory.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from local_identity.directory import USERS
from local_identity.signing_keys import SigningKey, SigningKeys
from local_identity.tokens import issue_access_token
from local_servers.orders_api import order_body
from local_stack.stack import LocalStack, StackPorts

pytestmark = pytest.mark.e2e

RATE_LIMIT = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(Path(tmp_path_factory.mktemp("attacks")), StackPorts.free(websocket_instances=1),
                         environ={"CUSTOMER_MAX_ORDERS_PER_MINUTE": str(RATE_LIMIT), "AUTH_KEY_REFRESH_SECONDS": "1"},
                         telemetry=False)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signing_key(stack: LocalStack) -> SigningKey:
    return SigningKeys(stack.data_dir / "identity").current


def forged(stack: LocalStack, *, key: SigningKey | None = None, user: str = "alice", **options: object) -> str:
    options.setdefault("issuer", stack.identity_url)
    options.setdefault("audience", "api://orders")
    return issue_access_token(key or signing_key(stack), USERS[user], client_id="attacker", **options)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_the_public_key(stack: LocalStack) -> str:
    key = signing_key(stack)
    now = int(time.time())
    claims = {"iss": stack.identity_url, "aud": "api://orders", "iat": now, "nbf": now, "exp": now + 600, "sub": "m",
              "oid": "m", "scp": "Orders.ReadWrite"}
    public_pem = key.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': key.kid}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())}"


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"urn:orders:problem:{kind}" and body["detail"]
    return body


@pytest.mark.parametrize("attack", [
    "no token", "expired", "wrong issuer", "wrong audience", "alg none", "HS256 signed with the public key",
    "self-signed key", "self-signed key under the real kid", "garbage",
])
@pytest.mark.parametrize("route", ["POST /orders", "GET /orders/{id}", "GET /products"])
def test_unauthenticated_requests_are_401_with_a_bearer_challenge(stack, api, attack, route) -> None:
    match attack:
        case "no token":
            headers = {}
        case "expired":
            headers = bearer(forged(stack, now=time.time() - 7200, lifetime_seconds=3600))
        case "wrong issuer":
            headers = bearer(forged(stack, issuer="https://login.microsoftonline.com/another-tenant/v2.0"))
        case "wrong audience":
            headers = bearer(forged(stack, audience="api://another-api"))
        case "alg none":
            headers = bearer(jwt.encode({"iss": stack.identity_url, "aud": "api://orders", "oid": "m", "sub": "m",
                                         "exp": int(time.time()) + 600, "iat": int(time.time())}, None,
                                        algorithm="none", headers={"kid": signing_key(stack).kid}))
        case "HS256 signed with the public key":
            headers = bearer(hs256_with_the_public_key(stack))
        case "self-signed key":
            headers = bearer(forged(stack, key=SigningKey.generate()))
        case "self-signed key under the real kid":
            headers = bearer(forged(stack, key=SigningKey(signing_key(stack).kid, SigningKey.generate().private_key, 0)))
        case "garbage":
            headers = {"Authorization": "Bearer \u00e9\u00e9.%%%.\u00b2".encode()}  # non-ASCII bytes on the wire
    method, path = route.split()
    response = api.request(method, path.replace("{id}", str(uuid.uuid4())), headers=headers,
                           json=order_body() if method == "POST" else None)
    assert_problem(response, 401, "unauthorized")
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer error=") and ("invalid_token" in challenge or "invalid_request" in challenge)


def test_a_storm_of_unknown_kids_is_401_every_time(stack, api) -> None:
    async def storm() -> list[int]:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
            tokens = [forged(stack, key=SigningKey(secrets.token_hex(8), signing_key(stack).private_key, 0))
                      for _ in range(100)]
            responses = await asyncio.gather(*(client.get("/products", headers=bearer(t)) for t in tokens))
        return [r.status_code for r in responses]

    assert set(asyncio.run(storm())) == {401}
    assert api.get("/products", headers=bearer(stack.token("alice"))).status_code == 200


def test_a_customer_cannot_order_in_another_customers_name(stack, api) -> None:
    response = api.post("/orders", json=order_body("somebody-else"), headers=bearer(stack.token("alice")))
    assert_problem(response, 403, "forbidden")
    assert "differs from the signed-in customer" in response.json()["detail"]


def test_a_token_without_the_permission_is_403(stack, api) -> None:
    from local_identity.client import development_token
    from local_identity.directory import DEV_WEBSOCKET_CLIENT_ID, DEV_WEBSOCKET_CLIENT_SECRET

    reader = development_token(stack.identity_url, client_id=DEV_WEBSOCKET_CLIENT_ID,
                               client_secret=DEV_WEBSOCKET_CLIENT_SECRET)  # may read, may not order
    response = api.post("/orders", json=order_body("c-1"), headers=bearer(reader))
    assert_problem(response, 403, "forbidden")
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'


def test_a_customer_reads_another_customers_order_as_absent(stack, api) -> None:
    accepted = api.post("/orders", json={"currency": "EUR", "items": [{"sku": "SKU-3", "quantity": 1}]},
                        headers=bearer(stack.token("alice")))
    assert accepted.status_code == 202
    cid = accepted.json()["correlationId"]
    stolen = api.get(f"/orders/{cid}", headers=bearer(stack.token("bob")))
    never_issued = api.get(f"/orders/{uuid.uuid4()}", headers=bearer(stack.token("bob")))
    assert_problem(stolen, 404, "order-not-found")
    assert stolen.json()["detail"].replace(cid, "ID") == assert_problem(never_issued, 404, "order-not-found")[
        "detail"].replace(never_issued.url.path.rsplit("/", 1)[1], "ID"), "no hint that the order exists"
    assert api.get(f"/orders/{cid}", headers=bearer(stack.token("alice"))).status_code == 200
    assert api.get(f"/orders/{cid}", headers=bearer(stack.token("olivia"))).status_code == 200  # an operator


def test_the_stock_drain_and_the_repeated_sku_bodies_are_refused(stack, api) -> None:
    products = api.get("/products", headers=bearer(stack.token("alice"))).json()
    drain = {"currency": "EUR", "items": [{"sku": p["sku"], "quantity": min(p["stock"], 1000)}
                                          for p in products if p["stock"] > 0]}
    repeated = {"currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 1000}] * 100}
    for body in (drain, repeated):
        response = api.post("/orders", json=body, headers=bearer(stack.token("alice")))
        assert_problem(response, 422, "validation-error")
        assert "at most 500 are accepted per order" in json.dumps(response.json()["errors"])
    assert [p["stock"] for p in api.get("/products", headers=bearer(stack.token("alice"))).json()] == \
        [p["stock"] for p in products], "nothing was ordered"


def test_an_oversized_body_is_413(stack, api) -> None:
    response = api.post("/orders", content=b'{"currency": "EUR", "items": [' + b" " * 70_000 + b"]}",
                        headers={**bearer(stack.token("alice")), "Content-Type": "application/json"})
    assert_problem(response, 413, "content-too-large")


def test_a_burst_over_the_rate_limit_is_429_with_retry_after(stack, api) -> None:
    """The limit counts per customer and calendar minute, so a burst across a minute's end starts counting
    again; the burst is sent early in a minute."""
    token = stack.token("carol")
    if time.time() % 60 > 40:
        time.sleep(60.5 - time.time() % 60)
    answers = [api.post("/orders", json={"currency": "EUR", "items": [{"sku": "SKU-3", "quantity": 1}]},
                        headers=bearer(token)) for _ in range(RATE_LIMIT + 3)]
    codes = [a.status_code for a in answers]
    assert codes[:RATE_LIMIT] == [202] * RATE_LIMIT and set(codes[RATE_LIMIT:]) == {429}
    refused = answers[-1]
    assert_problem(refused, 429, "too-many-orders")
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_key_rotation_at_the_identity_provider_is_picked_up_without_a_restart(stack, api) -> None:
    before = stack.token("alice")
    assert api.get("/products", headers=bearer(before)).status_code == 200
    new_kid = stack.rotate_signing_key()
    after = stack.token("alice")
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    time.sleep(1.1)  # AUTH_KEY_REFRESH_SECONDS=1 here: the validator may fetch the keys again
    assert api.get("/products", headers=bearer(after)).status_code == 200
    assert api.get("/products", headers=bearer(before)).status_code == 200, "the previous key stays valid"


@pytest.mark.parametrize("token", ["%C2%B2.abc", "k1.99." + "%C3%A9" * 43, "k1.1." + "A" * 43, "x" * 3000])
def test_crafted_notify_tokens_are_a_clean_401_at_the_handshake(stack, token) -> None:
    async def handshake() -> InvalidStatus:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{stack.ws_url()}?correlationId={uuid.uuid4()}&token={token}", proxy=None)
        return refused.value

    refused = asyncio.run(handshake())
    assert refused.response.status_code in (401, 403)
    log = (stack.log_dir / "ws-0.log").read_text()
    assert "Traceback" not in log and '"level": "ERROR"' not in log


def test_crafted_notify_tokens_in_frames_get_an_error_frame_and_the_socket_stays_open(stack, api) -> None:
    accepted = api.post("/orders", json={"currency": "EUR", "items": [{"sku": "SKU-3", "quantity": 1}]},
                        headers=bearer(stack.token("bob"))).json()

    async def frames() -> list[dict]:
        async with connect(accepted["notifyUrl"], proxy=None) as ws:
            answers = []
            for token in ("\u00b2.abc", "k1.9." + "\u00e9" * 43, None, 17):
                await ws.send(json.dumps({"action": "subscribe", "correlationId": str(uuid.uuid4()), "token": token}))
                while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "error":
                    pass  # status frames of the followed order
                answers.append(frame)
            await ws.send(json.dumps({"action": "unsubscribe", "correlationId": accepted["correlationId"]}))
            await ws.ping()  # still open
            return answers

    answers = asyncio.run(frames())
    assert len(answers) == 4 and all(a["type"] == "error" for a in answers)
