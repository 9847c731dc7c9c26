"""The broker's logging: the project's JSON schema (``service_platform.logs``) on stderr."""

from __future__ import annotations

from service_platform.logs import configure_json_logging


def configure(level: str = "info") -> None:
    """Send the ``localbus`` loggers to stderr as JSON lines."""
    configure_json_logging("broker", level, logger="localbus")
