"""The WebSocket service's logging: the project's JSON schema (``service_platform.logs``) on stderr."""

from __future__ import annotations

import logging

from service_platform.logs import configure_json_logging


def configure_logging(level: str, instance_id: str | None = None) -> None:
    configure_json_logging("websocket", level, fields={"instanceId": instance_id} if instance_id else None)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # azure-servicebus logs every link operation at INFO.
    logging.getLogger("azure").setLevel(logging.WARNING)
