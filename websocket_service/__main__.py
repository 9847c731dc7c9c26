"""``python -m websocket_service``: run one instance on uvicorn with the settings from the environment."""

from __future__ import annotations

import gc
import resource

import uvicorn

from service_platform.telemetry import configure_telemetry
from websocket_service.app import build_app
from websocket_service.bootstrap import Services, bootstrap
from websocket_service.logs import configure_logging
from websocket_service.settings import WebSocketSettings


def raise_file_limit() -> int:
    """Lift the soft limit on open files to the hard one: every socket is a file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def freeze_startup_objects() -> None:
    """Take what exists at start-up (modules, settings, clients) out of every later collection's scan."""
    gc.collect()
    gc.freeze()


def uvicorn_config(services: Services) -> uvicorn.Config:
    settings = services.settings
    return uvicorn.Config(
        build_app(services),
        host=settings.host,
        port=settings.port,
        # Upgrades go to the gateway's websockets connections, not to an ASGI WebSocket (memory per socket).
        ws=services.gateway.protocol_factory,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        log_config=None,
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=10,
    )


def serve(services: Services) -> None:
    raise_file_limit()
    freeze_startup_objects()
    uvicorn.Server(uvicorn_config(services)).run()


def main() -> None:
    settings = WebSocketSettings()
    configure_logging(settings.log_level, settings.instance_id)
    configure_telemetry("orders-websocket")
    serve(bootstrap(settings))


if __name__ == "__main__":
    main()
