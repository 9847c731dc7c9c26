"""One log schema for every process of the system: a JSON object per line.

``time`` (UTC, milliseconds), ``level``, ``service``, ``logger``, ``message``, then ``correlationId`` and any
other field passed in ``extra`` or supplied by a context (the local host's invocation fields), ``trace_id`` and
``span_id`` of the current span when tracing is on, and ``exception`` with the traceback. Files and containers keep these lines; ``console_line`` renders one for a
person at a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, TextIO

_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName", "color_message"}
)
_HEAD = ("time", "level", "service", "logger", "message", "correlationId")
# Kept in the files; at a terminal the span ids are noise (``python -m local_traces`` shows an order's trace).
_NOT_ON_CONSOLE = frozenset({"exception", "trace_id", "span_id"})

ContextFields = Callable[[], Mapping[str, Any] | None]


class JsonFormatter(logging.Formatter):
    """Formats records in the project's schema; ``fields`` are added to every line (e.g. ``instanceId``)."""

    def __init__(self, service: str, *, fields: Mapping[str, Any] | None = None,
                 context: ContextFields | None = None) -> None:
        super().__init__()
        self.service = service
        self.fields = dict(fields or {})
        self.context = context

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(self.fields)
        current = self.context() if self.context is not None else None
        if current:
            entry.update((key, value) for key, value in current.items() if value is not None)
        trace_id = getattr(record, "otelTraceID", "0")
        if trace_id != "0":  # set by OpenTelemetry's logging instrumentation while a span is current
            entry["trace_id"] = trace_id
            entry["span_id"] = getattr(record, "otelSpanID", "")
        for key in sorted(record.__dict__.keys() - _STANDARD_ATTRIBUTES):
            if not key.startswith(("_", "otel")):
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_json_logging(service: str, level: int | str = logging.INFO, *, stream: TextIO | None = None,
                           fields: Mapping[str, Any] | None = None, context: ContextFields | None = None,
                           logger: str = "") -> logging.Handler:
    """Send every record of ``logger`` (the root by default) to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service, fields=fields, context=context))
    target = logging.getLogger(logger)
    for existing in list(target.handlers):
        target.removeHandler(existing)
    target.addHandler(handler)
    target.setLevel(level.upper() if isinstance(level, str) else level)
    if logger:
        target.propagate = False
    return handler


_LEVEL_COLOURS = {"WARNING": "\x1b[33m", "ERROR": "\x1b[31m", "CRITICAL": "\x1b[31;1m"}


def console_line(line: str, *, colour: bool = False, default_service: str = "") -> str:
    """A JSON log line as a person reads it: ``time service LEVEL message correlationId=… key=…``.

    Lines that are not in the schema (a library printing to stdout) come back unchanged.
    """
    text = line.rstrip("\n")
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or "message" not in entry:
        return f"{'':12} {default_service:<9} {text}"
    stamp = str(entry.get("time", ""))[11:23]
    level = str(entry.get("level", "")).upper()
    service = str(entry.get("service") or default_service)
    message = str(entry["message"])
    correlation_id = entry.get("correlationId")
    if correlation_id:
        # The function app also puts it in the message text (the Functions worker forwards only that).
        message = message.replace(f" [correlationId={correlation_id}]", "")
    parts = [f"{stamp:<12}", f"{service:<9}", f"{level:<7}", message]
    if correlation_id:
        parts.append(f"correlationId={correlation_id}")
    extras = {k: v for k, v in entry.items() if k not in _HEAD and k not in _NOT_ON_CONSOLE}
    parts.extend(f"{key}={value}" for key, value in extras.items() if value not in (None, ""))
    rendered = " ".join(parts)
    if colour and level in _LEVEL_COLOURS:
        rendered = f"{_LEVEL_COLOURS[level]}{rendered}\x1b[0m"
    if entry.get("exception"):
        rendered += "\n" + "\n".join("    " + row for row in str(entry["exception"]).splitlines())
    return rendered
