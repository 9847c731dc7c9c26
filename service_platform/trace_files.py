"""An order's trace from the OTLP JSON lines the services write under ``LOCAL_TELEMETRY_DIR``.

Every process writes its own ``<service>-<pid>.traces.jsonl``; an order's trace is every span of each trace
that has a span naming the order (``orders.correlation_id``): the placing and, after a replay, each attempt.
``python -m local_traces`` prints it as a waterfall, and the order page draws the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service_platform.telemetry import CORRELATION_ID_ATTRIBUTE

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS = {0: "unset", 1: "ok", 2: "error", "STATUS_CODE_UNSET": "unset", "STATUS_CODE_OK": "ok",
           "STATUS_CODE_ERROR": "error"}


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    service: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True)
class WaterfallRow:
    """One span of a trace, placed in time: what the terminal and the page show."""

    service: str
    name: str
    kind: str
    depth: int
    offset_ms: float
    duration_ms: float
    status: str
    trace_id: str

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "name": self.name, "kind": self.kind, "depth": self.depth,
                "offsetMs": round(self.offset_ms, 3), "durationMs": round(self.duration_ms, 3),
                "status": self.status, "traceId": self.trace_id}


def _value(value: dict[str, Any]) -> Any:
    for kind in ("stringValue", "boolValue", "doubleValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_value(item) for item in value["arrayValue"].get("values", [])]
    return None


def _attributes(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items}


def parse_line(line: str) -> Iterator[SpanRecord]:
    """The spans of one exported line (an OTLP ``ExportTraceServiceRequest`` in JSON)."""
    data = json.loads(line)
    for resource_spans in data.get("resourceSpans", []):
        service = str(_attributes(resource_spans.get("resource", {}).get("attributes", [])).get("service.name", "?"))
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                status = span.get("status") or {}
                yield SpanRecord(
                    trace_id=span["traceId"], span_id=span["spanId"], parent_span_id=span.get("parentSpanId", ""),
                    name=span["name"], kind=KINDS.get(span.get("kind", 0), "unspecified"), service=service,
                    start_ns=int(span["startTimeUnixNano"]), end_ns=int(span["endTimeUnixNano"]),
                    status=_STATUS.get(status.get("code", 0), "unset"), status_message=status.get("message", ""),
                    attributes=_attributes(span.get("attributes", [])))


def read_spans(directory: Path) -> Iterator[SpanRecord]:
    """Every span exported under ``directory``; a line still being written is skipped."""
    for path in sorted(directory.glob("*.traces.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield from parse_line(line)
                except (ValueError, KeyError):
                    continue


def order_trace(directory: Path, correlation_id: str) -> list[SpanRecord]:
    """The spans of every trace that names ``correlation_id``, oldest first."""
    spans = list(read_spans(directory))
    traces = {span.trace_id for span in spans if span.attributes.get(CORRELATION_ID_ATTRIBUTE) == correlation_id}
    return sorted((span for span in spans if span.trace_id in traces), key=lambda span: span.start_ns)


def _children(spans: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    """Each span's children by start, under its parent's id; spans whose parent is not among them under ``""``."""
    known = {span.span_id for span in spans}
    children: dict[str, list[SpanRecord]] = {}
    for span in sorted(spans, key=lambda span: span.start_ns):
        children.setdefault(span.parent_span_id if span.parent_span_id in known else "", []).append(span)
    return children


def waterfall(spans: list[SpanRecord]) -> list[WaterfallRow]:
    """Rows in tree order (a child under its parent, siblings by start), offsets from the first span's start."""
    if not spans:
        return []
    children = _children(spans)
    origin = min(span.start_ns for span in spans)
    rows: list[WaterfallRow] = []

    def visit(span: SpanRecord, depth: int) -> None:
        rows.append(WaterfallRow(span.service, span.name, span.kind, depth, (span.start_ns - origin) / 1e6,
                                 span.duration_ms, span.status, span.trace_id))
        for child in children.get(span.span_id, []):
            visit(child, depth + 1)

    for root in children.get("", []):
        visit(root, 0)
    return rows


def phases(spans: list[SpanRecord]) -> dict[str, float]:
    """Where the order's first trace spent its time, in milliseconds, as far as its spans tell.

    ``intake``: the HTTP request; ``queue``: from the broker's acknowledgement of the order to the start of
    its (last) processing; ``processing``: that delivery; ``toSocket``: from the status event's send to the
    first frame written to a socket.
    """
    if not spans:
        return {}
    first_trace = spans[0].trace_id
    children = _children([span for span in spans if span.trace_id == first_trace])

    def child(parent: SpanRecord | None, kind: str, *, last: bool = False) -> SpanRecord | None:
        found = [span for span in children.get(parent.span_id if parent else "", []) if span.kind == kind]
        return (found[-1] if last else found[0]) if found else None

    def descendant(parent: SpanRecord | None, kind: str) -> SpanRecord | None:
        for span in children.get(parent.span_id, []) if parent else []:
            if span.kind == kind:
                return span
            if (deeper := descendant(span, kind)) is not None:
                return deeper
        return None

    result: dict[str, float] = {}
    server = child(None, "server")
    if server is not None:
        result["intake"] = server.duration_ms
    send = descendant(server, "producer")  # under the page's proxy, the intake's own request span is a child
    process = child(send, "consumer", last=True)
    if send is not None and process is not None:
        result["queue"] = max(0.0, (process.start_ns - send.end_ns) / 1e6)
    if process is not None:
        result["processing"] = process.duration_ms
    status_send = descendant(process, "producer")
    receipt = child(status_send, "consumer")
    pushes = [span for span in children.get(receipt.span_id, []) if span.kind == "producer"] if receipt else []
    if status_send is not None and pushes:
        result["toSocket"] = (min(push.end_ns for push in pushes) - status_send.start_ns) / 1e6
    return {name: round(value, 3) for name, value in result.items()}


def render(rows: list[WaterfallRow], *, width: int = 40) -> str:
    """The waterfall as text: service, span (indented by depth), start offset, duration, status and a bar."""
    if not rows:
        return ""
    total = max(row.offset_ms + row.duration_ms for row in rows) or 1.0
    name_width = max(len("span"), *(len("  " * row.depth + row.name) for row in rows))
    service_width = max(len("service"), *(len(row.service) for row in rows))
    lines = [f"{'service':<{service_width}}  {'span':<{name_width}}  {'start ms':>9}  {'duration ms':>11}  status"]
    for row in rows:
        start = int(row.offset_ms / total * width)
        length = max(1, int(row.duration_ms / total * width))
        bar = " " * start + "█" * min(length, width - start)
        lines.append(f"{row.service:<{service_width}}  {'  ' * row.depth + row.name:<{name_width}}  "
                     f"{row.offset_ms:>9.1f}  {row.duration_ms:>11.1f}  {row.status:<6} |{bar:<{width}}|")
    return "\n".join(lines)
