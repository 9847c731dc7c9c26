"""The ASGI application that serves a function app's HTTP triggers, like the Functions host's front end.

Routes are ``/<routePrefix>/<route>``. A request becomes the protocol's ``RpcHttp`` as the host sends it
(lower-cased headers, the query, the route parameters, the raw body bytes); the worker turns it into
the ``azure.functions.HttpRequest`` and the function's answer back into ``RpcHttp``, which becomes the
HTTP answer. Host endpoints live under ``/admin``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from service_platform.message_tracing import current_traceparent

from .invocation import Invoker
from .loader import FunctionSpec
from .routes import RouteTemplate
from .telemetry import name_request_span

log = logging.getLogger("local_functions_host.http")

DEFAULT_BODY_LIMIT = 104_857_600  # the Functions host's default FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (100 MB)
BODY_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


@dataclass(frozen=True)
class HttpRoute:
    template: RouteTemplate
    spec: FunctionSpec

    @property
    def methods(self) -> tuple[str, ...] | None:
        assert self.spec.http is not None
        return self.spec.http.methods


@dataclass(frozen=True)
class CorsPolicy:
    origins: frozenset[str]
    allow_credentials: bool = False

    def allowed(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins

    @classmethod
    def parse(cls, text: str | None, allow_credentials: bool = False) -> CorsPolicy | None:
        origins = frozenset(part.strip() for part in (text or "").split(",") if part.strip())
        return cls(origins, allow_credentials) if origins else None


class FunctionsHttpApp:
    """ASGI app: ``status`` is called for ``GET /admin/host/status`` and returns (http status, JSON body)."""

    def __init__(
        self,
        functions: Iterable[FunctionSpec],
        *,
        route_prefix: str,
        invoker: Invoker,
        status: Callable[[], tuple[int, Mapping[str, Any]]],
        body_limit: int = DEFAULT_BODY_LIMIT,
        cors: CorsPolicy | None = None,
    ) -> None:
        self.route_prefix = route_prefix.strip("/")
        self._invoker = invoker
        self._status = status
        self._body_limit = body_limit
        self._cors = cors
        self._functions = [spec for spec in functions]
        routes = [HttpRoute(RouteTemplate(spec.http.route), spec) for spec in self._functions if spec.http]
        self.routes = sorted(routes, key=lambda route: route.template.precedence)

    def url_path(self, spec: FunctionSpec) -> str:
        assert spec.http is not None
        return "/" + "/".join(part for part in (self.route_prefix, spec.http.route) if part)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        method = scope["method"].upper()
        origin = _header(scope, b"origin")

        if path.startswith("/admin/"):
            await self._admin(path, method, send)
            return
        relative = self._strip_prefix(path)
        if relative is None:
            await _plain(send, 404, f"No function is served at {path}.")
            return

        if method == "OPTIONS" and origin and self._cors and _header(scope, b"access-control-request-method"):
            await self._preflight(scope, origin, send)
            return

        matched: tuple[HttpRoute, dict[str, str]] | None = None
        for route in self.routes:
            params = route.template.match(relative)
            if params is None:
                continue
            if route.methods is None or method in route.methods:
                matched = (route, params)
                break
        if matched is None:
            await _plain(send, 404, f"No function matches {method} {path}.", self._cors_headers(origin))
            return
        route, params = matched

        try:
            body = await self._read_body(scope, receive)
        except _ClientGone:
            return  # nothing to answer, and no reason to run the function on half a request
        if body is None:
            await _plain(
                send, 413, f"The request body is larger than {self._body_limit} bytes ({BODY_LIMIT_SETTING}).",
                self._cors_headers(origin),
            )
            return

        protos = self._invoker.worker.protos
        request = protos.RpcHttp(
            method=method,
            url=_url(scope, path),
            headers=_joined_headers(scope),
            query=_query_params(scope),
            params=params,
            body=protos.TypedData(bytes=body),
        )
        metadata = {name: protos.TypedData(string=value) for name, value in params.items()}
        name_request_span(method, self.url_path(route.spec), route.spec.name)
        try:
            response = await self._invoker.invoke(
                route.spec, protos.TypedData(http=request), metadata,
                trace_parent=current_traceparent() or _header(scope, b"traceparent") or "",
            )
        except Exception:
            # The invoker has logged the failure with the invocation id. The Functions host answers an
            # unhandled exception (or a timed-out invocation) with an empty 500.
            await _send(send, 500, self._cors_headers(origin), b"")
            return
        await self._respond(send, route.spec, _return_value(response), self._cors_headers(origin))

    def _strip_prefix(self, path: str) -> str | None:
        trimmed = path.strip("/")
        if not self.route_prefix:
            return trimmed
        prefix = self.route_prefix.lower()
        lowered = trimmed.lower()
        if lowered == prefix:
            return ""
        if lowered.startswith(prefix + "/"):
            return trimmed[len(prefix) + 1 :].strip("/")
        return None

    async def _read_body(self, scope: dict[str, Any], receive: Receive) -> bytes | None:
        declared = _header(scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > self._body_limit:
            return None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._body_limit:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _respond(self, send: Send, spec: FunctionSpec, result: Any, extra: list[tuple[bytes, bytes]]) -> None:
        """Map the worker's return value (a ``TypedData``) onto the HTTP answer, as the host does."""
        kind = result.WhichOneof("data") if result is not None else None
        if kind == "http":
            http = result.http
            headers = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in http.headers.items() if name.lower() != "content-length"
            ]
            headers.extend((b"set-cookie", _cookie_text(cookie).encode("latin-1")) for cookie in http.cookies)
            status = int(http.status_code or 200)
            await _send(send, status, headers + extra, _body_bytes(http.body))
        elif kind == "string":
            await _send(send, 200, [(b"content-type", b"text/plain; charset=utf-8"), *extra], result.string.encode())
        elif kind == "bytes":
            await _send(send, 200, [(b"content-type", b"application/octet-stream"), *extra], result.bytes)
        elif kind is None:
            await _send(send, 204, extra, b"")
        else:
            log.error(
                "Function %r returned %s data; an HTTP function returns azure.functions.HttpResponse or str.",
                spec.name, kind,
            )
            await _send(send, 500, extra, b"")

    async def _admin(self, path: str, method: str, send: Send) -> None:
        route = path.rstrip("/").lower()
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, "Host endpoints answer GET only.", [(b"allow", b"GET")])
        elif route == "/admin/host/status":
            code, body = self._status()
            await _json(send, code, body)
        elif route == "/admin/host/ping":
            code, _ = self._status()
            await _send(send, 200 if code == 200 else 503, [], b"")
        elif route == "/admin/functions":
            await _json(send, 200, [self._describe(spec) for spec in self._functions])
        else:
            await _plain(send, 404, f"No host endpoint at {path}.")

    def _describe(self, spec: FunctionSpec) -> dict[str, Any]:
        description: dict[str, Any] = {"name": spec.name, "trigger": spec.trigger_type, "bindings": list(spec.raw_bindings)}
        if spec.http:
            description["invoke_url_template"] = self.url_path(spec)
            description["methods"] = list(spec.http.methods) if spec.http.methods else None
        return description

    async def _preflight(self, scope: dict[str, Any], origin: str, send: Send) -> None:
        if not self._cors or not self._cors.allowed(origin):
            await _send(send, 204, [], b"")
            return
        headers = self._cors_headers(origin) + [
            (b"access-control-allow-methods", (_header(scope, b"access-control-request-method") or "GET").encode()),
            (b"access-control-max-age", b"600"),
        ]
        requested = _header(scope, b"access-control-request-headers")
        if requested:
            headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
        await _send(send, 204, headers, b"")

    def _cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        if not origin or not self._cors or not self._cors.allowed(origin):
            return []
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1") if self._cors.allow_credentials or "*" not in self._cors.origins else b"*"),
            (b"vary", b"Origin"),
        ]
        if self._cors.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers


def _return_value(response: Any) -> Any:
    """The ``$return`` value: the response's return value, or a ``$return`` output binding."""
    if response.HasField("return_value"):
        return response.return_value
    for binding in response.output_data:
        if binding.name == "$return":
            return binding.data
    return None


def _body_bytes(body: Any) -> bytes:
    kind = body.WhichOneof("data")
    if kind == "bytes":
        return body.bytes
    if kind == "string":
        return body.string.encode("utf-8")
    if kind == "json":
        return body.json.encode("utf-8")
    return b""


def _cookie_text(cookie: Any) -> str:
    parts = [f"{cookie.name}={cookie.value}"]
    if cookie.HasField("domain") and cookie.domain.value:
        parts.append(f"domain={cookie.domain.value}")
    if cookie.HasField("path") and cookie.path.value:
        parts.append(f"path={cookie.path.value}")
    if cookie.HasField("expires"):
        expires = cookie.expires.value.ToDatetime()
        parts.append("expires=" + expires.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    if cookie.HasField("max_age"):
        parts.append(f"max-age={int(cookie.max_age.value)}")
    if cookie.HasField("secure") and cookie.secure.value:
        parts.append("secure")
    if cookie.HasField("http_only") and cookie.http_only.value:
        parts.append("httponly")
    same_site = {1: "lax", 2: "strict", 3: "none"}.get(cookie.same_site)
    if same_site:
        parts.append(f"samesite={same_site}")
    return "; ".join(parts)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _joined_headers(scope: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


def _query_params(scope: dict[str, Any]) -> dict[str, str]:
    from urllib.parse import parse_qsl

    query = scope.get("query_string", b"").decode("latin-1")
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def _url(scope: dict[str, Any], path: str) -> str:
    host = _header(scope, b"host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    query = scope.get("query_string", b"")
    url = f"{scope.get('scheme', 'http')}://{host}{path}"
    return f"{url}?{query.decode('latin-1')}" if query else url


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send(send, status, [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])], text.encode())


async def _json(send: Send, status: int, body: Any) -> None:
    await _send(send, status, [(b"content-type", b"application/json; charset=utf-8")], json.dumps(body, default=str).encode())
