"""The local host's logging: the project's JSON schema with the current invocation's identity on every record.

The host sets :data:`invocation_fields` around each invocation (function name, invocation id, and for
Service Bus the message id, CorrelationId and session id). Records from function code pick them up too,
as do any ``extra={...}`` fields the code passes.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from azure_functions_runtime import invocation_id_cv

from service_platform.logs import JsonFormatter, configure_json_logging

__all__ = [
    "InvocationLevelFilter", "JsonFormatter", "configure_logging", "current_invocation_fields", "fields_by_invocation",
    "invocation_fields",
]

invocation_fields: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "local_functions_host_invocation", default=None
)
# The fields of each running invocation by id. The worker runs synchronous functions in its thread pool
# without the caller's context, but marks each thread with the invocation id (``invocation_id_cv``).
fields_by_invocation: dict[str, Mapping[str, Any]] = {}


def current_invocation_fields() -> Mapping[str, Any] | None:
    """The fields of the invocation this code runs in: on the loop, or in a worker thread."""
    fields = invocation_fields.get()
    if fields is None:
        invocation_id = invocation_id_cv.get()
        if invocation_id is not None:
            fields = fields_by_invocation.get(invocation_id)
    return fields


class InvocationLevelFilter(logging.Filter):
    """Applies host.json levels: ``Function``/``Function.<name>`` inside invocations, ``default`` elsewhere."""

    def __init__(self, default: int, function_level: Callable[[str], int]) -> None:
        super().__init__()
        self._default = default
        self._function_level = function_level

    def filter(self, record: logging.LogRecord) -> bool:
        current = current_invocation_fields()
        if current is not None and "functionName" in current:
            return record.levelno >= self._function_level(current["functionName"])
        return record.levelno >= self._default


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Send every record of the process to ``stream`` (stderr) as JSON lines, replacing other root handlers."""
    handler = configure_json_logging("functions", level, stream=stream, context=current_invocation_fields)
    # The SDK's AMQP layer logs every link event at INFO; keep its warnings and errors only.
    for noisy in ("azure", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # The AMQP layer warns about every broken connection and retry; the listeners log one line per
    # change of state instead.
    logging.getLogger("azure.servicebus._pyamqp").setLevel(max(level, logging.ERROR))
    # A session receiver waiting for NEXT_AVAILABLE times out whenever no session has messages; the SDK
    # then warns, with a traceback, that its cleanup "did not complete". On an idle queue that is normal.
    logging.getLogger("azure.servicebus.aio._async_utils").setLevel(max(level, logging.ERROR))
    return handler
