"""The identity provider over HTTP (Starlette): discovery, JWKS, an authorization-code flow with PKCE for
the order page, and a token endpoint.

| route | what |
|---|---|
| ``GET /.well-known/openid-configuration`` | discovery document (issuer, jwks_uri, endpoints) |
| ``GET /keys`` | the JWKS (newest two keys) |
| ``GET /authorize`` | pick a development user; redirects back with a code (PKCE S256 required) |
| ``POST /token`` | ``authorization_code`` (the page), ``client_credentials`` (the backend), ``password`` (curl) |
| ``POST /rotate`` | add a new signing key (the previous one stays published) |
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from local_identity.directory import CLIENTS, DEV_PAGE_CLIENT_ID, USERS, Principal
from local_identity.signing_keys import SigningKeys
from local_identity.tokens import DEFAULT_TOKEN_LIFETIME_SECONDS, issue_access_token

CODE_LIFETIME_SECONDS = 120
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "content-type",
        "Access-Control-Allow-Methods": "GET, POST"}


@dataclass(frozen=True, slots=True)
class PendingCode:
    principal: Principal
    client_id: str
    redirect_uri: str
    code_challenge: str
    expires: float


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status, headers=CORS)


def _local_redirect(uri: str) -> bool:
    # Development only: the page runs on the loopback interface; anything else could be a code thief.
    parts = urlsplit(uri)
    return parts.scheme in {"http", "https"} and parts.hostname in {"127.0.0.1", "localhost", "::1"}


def build_identity_app(keys: SigningKeys, *, issuer: str, audience: str,
                       token_lifetime_seconds: int = DEFAULT_TOKEN_LIFETIME_SECONDS) -> Starlette:
    codes: dict[str, PendingCode] = {}

    def token_answer(principal: Principal, client_id: str) -> JSONResponse:
        token = issue_access_token(keys.current, principal, issuer=issuer, audience=audience, client_id=client_id,
                                   lifetime_seconds=token_lifetime_seconds)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": token_lifetime_seconds,
                             "principal": {"name": principal.name, "objectId": principal.object_id,
                                           "kind": principal.kind, "displayName": principal.display_name}},
                            headers={**CORS, "Cache-Control": "no-store"})

    async def discovery(request: Request) -> Response:
        return JSONResponse({
            "issuer": issuer,
            "jwks_uri": f"{issuer}/keys",
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "client_credentials", "password"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["pairwise"],
        }, headers=CORS)

    async def jwks(request: Request) -> Response:
        request.app.state.jwks_requests += 1
        return JSONResponse(keys.jwks(), headers={**CORS, "Cache-Control": "max-age=300"})

    async def authorize(request: Request) -> Response:
        query = request.query_params
        redirect_uri = query.get("redirect_uri", "")
        if not _local_redirect(redirect_uri):
            return HTMLResponse("<p>redirect_uri must be a loopback http(s) URL</p>", 400)
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256" \
                or not query.get("code_challenge"):
            return HTMLResponse("<p>use response_type=code with a PKCE code_challenge (S256)</p>", 400)
        user = query.get("user")
        if user is None:
            links = "".join(
                f'<li><a href="{html.escape(str(request.url.include_query_params(user=name)))}">'
                f"{html.escape(p.display_name)}</a></li>" for name, p in USERS.items())
            return HTMLResponse(f"<!doctype html><title>Sign in (development)</title><h1>Sign in as</h1>"
                                f"<ul>{links}</ul>")
        principal = USERS.get(user)
        if principal is None:
            return HTMLResponse(f"<p>no development user named {html.escape(user)}</p>", 400)
        code = secrets.token_urlsafe(24)
        codes[code] = PendingCode(principal, query.get("client_id", DEV_PAGE_CLIENT_ID), redirect_uri,
                                  query["code_challenge"], time.monotonic() + CODE_LIFETIME_SECONDS)
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{separator}{urlencode({'code': code, 'state': query.get('state', '')})}",
                                302)

    async def token(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=CORS)
        # OAuth token requests are application/x-www-form-urlencoded (RFC 6749 §4.1.3).
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            pending = codes.pop(str(form.get("code", "")), None)
            if pending is None or pending.expires < time.monotonic():
                return _oauth_error("invalid_grant", "the code is unknown, used or expired: sign in again")
            verifier = str(form.get("code_verifier", ""))
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if not secrets.compare_digest(challenge, pending.code_challenge) \
                    or form.get("redirect_uri") != pending.redirect_uri:
                return _oauth_error("invalid_grant", "code_verifier or redirect_uri does not match the request")
            return token_answer(pending.principal, pending.client_id)
        if grant == "client_credentials":
            client_id = str(form.get("client_id", ""))
            secret, principal = CLIENTS.get(client_id, ("", None))
            if principal is None or not secrets.compare_digest(str(form.get("client_secret", "")), secret):
                return _oauth_error("invalid_client", "unknown client_id or wrong client_secret", 401)
            return token_answer(principal, client_id)
        if grant == "password":
            principal = USERS.get(str(form.get("username", "")))
            if principal is None:
                return _oauth_error("invalid_grant", f"no development user; pick one of {', '.join(USERS)}")
            return token_answer(principal, str(form.get("client_id", DEV_PAGE_CLIENT_ID)))
        return _oauth_error("unsupported_grant_type",
                            "grant_type must be authorization_code, client_credentials or password")

    async def rotate(request: Request) -> Response:
        key = keys.rotate()
        return JSONResponse({"kid": key.kid, "published": [k["kid"] for k in keys.jwks()["keys"]]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[
        Route("/.well-known/openid-configuration", discovery),
        Route("/keys", jwks),
        Route("/authorize", authorize),
        Route("/token", token, methods=["POST", "OPTIONS"]),
        Route("/rotate", rotate, methods=["POST"]),
        Route("/healthz", healthz),
    ])
    app.state.jwks_requests = 0  # how often validators fetched the keys (tests and benchmarks read it)
    return app
