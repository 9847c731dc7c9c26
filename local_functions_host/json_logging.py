"""JSON-lines logging with the current invocation's identity on every record.

The host sets :data:`invocation_fields` around each invocation (function name, invocation id, and for
Service Bus the message id, CorrelationId and session id). Records from function code pick them up too,
as do any ``extra={...}`` fields the code passes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, TextIO

invocation_fields: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "local_functions_host_invocation", default=None
)

_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, invocation fields, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = invocation_fields.get()
        if current:
            entry.update((key, value) for key, value in current.items() if value is not None)
        for key in sorted(record.__dict__.keys() - _STANDARD_ATTRIBUTES):
            if not key.startswith("_"):
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class InvocationLevelFilter(logging.Filter):
    """Applies host.json levels: ``Function``/``Function.<name>`` inside invocations, ``default`` elsewhere."""

    def __init__(self, default: int, function_level: Callable[[str], int]) -> None:
        super().__init__()
        self._default = default
        self._function_level = function_level

    def filter(self, record: logging.LogRecord) -> bool:
        current = invocation_fields.get()
        if current is not None and "functionName" in current:
            return record.levelno >= self._function_level(current["functionName"])
        return record.levelno >= self._default


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Send every record of the process to ``stream`` (stderr) as JSON lines, replacing other root handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
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
