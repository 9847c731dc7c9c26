"""An order's trace as the services write it (OTLP JSON lines in two processes' files), for the readers' tests."""

from __future__ import annotations

import json
from pathlib import Path

ORDER = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
TRACE = "0af7651916cd43dd8448eb211c80319c"


def span(span_id: str, name: str, kind: int, start_ms: float, end_ms: float, parent: str = "", *,
         trace: str = TRACE, correlation_id: str | None = None, error: bool = False) -> dict:
    attributes = [{"key": "orders.correlation_id", "value": {"stringValue": correlation_id}}] if correlation_id else []
    return {"traceId": trace, "spanId": span_id, "parentSpanId": parent, "name": name, "kind": kind,
            "startTimeUnixNano": str(int(1e15 + start_ms * 1e6)), "endTimeUnixNano": str(int(1e15 + end_ms * 1e6)),
            "attributes": attributes, "status": {"code": 2, "message": "boom"} if error else {}}


def line(service: str, *spans: dict) -> str:
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": list(spans)}]}]})


def write_order(directory: Path) -> None:
    (directory / "orders-functions-1.traces.jsonl").write_text("\n".join([
        line("orders-functions",
             span("a1", "POST /api/orders", 2, 0, 12),
             span("a2", "send orders", 4, 3, 11, "a1", correlation_id=ORDER)),
        line("orders-functions",
             span("b1", "process orders", 5, 15, 40, "a2", correlation_id=ORDER),
             span("b2", "INSERT", 3, 20, 25, "b1"),
             span("b3", "send order-status", 4, 30, 38, "b1", correlation_id=ORDER)),
        '{"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [{"traceId"',  # a line being written
        line("orders-functions", span("z1", "GET /api/products", 2, 1, 2, trace="f" * 32)),
    ]) + "\n")
    (directory / "orders-websocket-2.traces.jsonl").write_text(line(
        "orders-websocket",
        span("c1", "process order-status", 5, 41, 43, "b3", correlation_id=ORDER),
        span("c2", "push status", 4, 42, 45, "c1", correlation_id=ORDER)) + "\n")
