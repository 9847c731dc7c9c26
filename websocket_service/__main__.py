"""``python -m websocket_service``: run one instance on uvicorn with the settings from the environment."""

from __future__ import annotations

import gc
import resource
import socket

import uvicorn

from service_platform.inherited_socket import inherited_listener
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


def serve(services: Services, listener: socket.socket | None = None) -> None:
    """Serve on ``listener`` if one was handed over, else bind the settings' host and port."""
    raise_file_limit()
    freeze_startup_objects()
    uvicorn.Server(uvicorn_config(services)).run(sockets=[listener] if listener is not None else None)


def main() -> None:
    listener = inherited_listener()  # the local run and the tests hand one over
    settings = WebSocketSettings()
    if listener is not None:  # the port peers reach this instance on is the socket's, whatever WS_PORT says
        settings = settings.model_copy(update={"port": listener.getsockname()[1]})
    configure_logging(settings.log_level, settings.instance_id)
    configure_telemetry("orders-websocket")
    serve(bootstrap(settings), listener)


if __name__ == "__main__":
    main()
