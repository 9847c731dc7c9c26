"""The Starlette shell for HTTP: internal forward endpoint, health, the page and its API proxy.

WebSocket upgrades never reach it: uvicorn hands them to ``gateway.SocketGateway``. Everything here is
translation between HTTP and the service layer; the decisions live in ``core`` and ``notifier``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service_platform.notify_tokens import InvalidNotifyToken
from service_platform.telemetry import configured as configured_telemetry
from service_platform.trace_files import order_trace, phases, waterfall
from websocket_service.core import InvalidEvent, StatusEvent
from websocket_service.forwarder import INTERNAL_EVENTS_PATH

if TYPE_CHECKING:
    from websocket_service.bootstrap import Services

log = logging.getLogger("websocket_service.app")

STATIC_DIR = Path(__file__).parent / "static"
MAX_INTERNAL_BODY = 8 * 1024 * 1024


def build_app(services: Services) -> Starlette:
    """The ASGI app for ``services``; nothing connects before the lifespan starts.

    Run it with ``ws=services.gateway.protocol_factory`` so upgrades on the same port reach the gateway.
    """
    settings = services.settings
    notifier = services.notifier
    gateway = services.gateway
    internal_auth = f"Bearer {settings.internal_secret.get_secret_value()}".encode()

    async def internal_events(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), internal_auth):
            return JSONResponse({"error": "missing or wrong internal secret (WS_INTERNAL_SECRET)"}, 401)
        body = await request.body()
        if len(body) > MAX_INTERNAL_BODY:
            return JSONResponse({"error": "body too large"}, 413)
        try:
            data = json.loads(body)
            events = [StatusEvent.from_mapping(item) for item in data["events"]]
        except (ValueError, KeyError, TypeError, InvalidEvent) as exc:
            return JSONResponse({"error": f'expected {{"events": [status event, ...]}}: {exc}'}, 400)
        delivered = notifier.deliver_local(events)
        return JSONResponse({"delivered": delivered}, 202)

    async def page_config(request: Request) -> Response:
        sign_in = None
        if settings.sign_in_authority:
            sign_in = {"authority": settings.sign_in_authority, "clientId": settings.sign_in_client_id,
                       "scope": settings.sign_in_scope}
        return JSONResponse({"signIn": sign_in}, headers={"Cache-Control": "no-store"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "instanceId": settings.instance_id, "sockets": len(gateway.sessions)})

    async def readyz(request: Request) -> Response:
        redis_ok = await services.registry.ping()
        broker = services.consumer
        broker_ok = broker is not None and broker.connected
        checks = {
            "redis": "ok" if redis_ok else "unreachable",
            "broker": "ok" if broker_ok else ("not configured" if broker is None else "unreachable"),
        }
        ready = redis_ok and broker_ok and not services.shutting_down
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    async def api_proxy(request: Request) -> Response:
        """Same-origin access to the order API for the page (the Functions host sets no CORS headers)."""
        client = services.api_client
        assert client is not None
        path = request.url.path.removeprefix("/api/")
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "idempotency-key", "accept", "traceparent", "authorization")}
        try:
            upstream = await client.request(request.method, path, params=request.query_params,
                                            content=await request.body(), headers=headers)
        except httpx.HTTPError as exc:
            return JSONResponse({"title": "order API unreachable", "detail": repr(exc),
                                 "status": 502}, 502, media_type="application/problem+json")
        passed = {k: v for k, v in upstream.headers.items()
                  if k.lower() in ("content-type", "location", "retry-after", "www-authenticate")}
        return Response(upstream.content, upstream.status_code, headers=passed)

    async def order_trace_rows(request: Request) -> Response:
        """The order's spans as waterfall rows, for the page's timeline; with the order's notify token."""
        correlation_id = request.path_params["correlation_id"]
        try:
            gateway.notify_tokens.verify(request.query_params.get("token"), correlation_id)
        except InvalidNotifyToken as exc:
            return JSONResponse({"error": f"{exc}: pass the order's notifyToken as ?token="}, 403)
        local_dir = trace_dir()
        if local_dir is None:
            return JSONResponse({"error": "no local trace files here (LOCAL_TELEMETRY_DIR is not set)"}, 404)
        spans = await asyncio.to_thread(order_trace, local_dir, correlation_id)
        return JSONResponse({"correlationId": correlation_id, "phases": phases(spans),
                             "spans": [row.to_json() for row in waterfall(spans)]},
                            headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            services.shutting_down = True
            await gateway.shutdown()
            if (telemetry := configured_telemetry()) is not None:
                # The spans still buffered, while the identity the exporter may use is still open.
                await asyncio.to_thread(telemetry.shutdown)
            await services.stop()

    routes: list = [
        Route(INTERNAL_EVENTS_PATH, internal_events, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/config.json", page_config),
        Route("/traces/{correlation_id}", order_trace_rows),
    ]
    if settings.proxy_api:
        routes += [
            Route("/api/products", api_proxy, methods=["GET"]),
            Route("/api/orders", api_proxy, methods=["POST"]),
            Route("/api/orders/{correlation_id}", api_proxy, methods=["GET"]),
        ]
    routes.append(Mount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="page"))
    middleware = []
    if configured_telemetry() is not None:
        # Server spans of the HTTP routes (forwards between instances join the event's trace); WebSocket
        # upgrades never reach the app.
        middleware.append(Middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"],
                                     excluded_urls="healthz,readyz"))
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)


def trace_dir() -> Path | None:
    telemetry = configured_telemetry()
    return None if telemetry is None else telemetry.settings.local_dir
