"""Reading an order's trace back from OTLP JSON lines: lookup by correlationId, waterfall, phases."""

from __future__ import annotations

from pathlib import Path

from service_platform.trace_files import order_trace, phases, read_spans, render, waterfall
from tests.fakes.trace_lines import ORDER, line, span, write_order

def test_an_order_trace_is_every_span_of_the_traces_that_name_it_from_all_files(tmp_path: Path) -> None:
    write_order(tmp_path)

    spans = order_trace(tmp_path, ORDER)

    assert [s.name for s in spans] == ["POST /api/orders", "send orders", "process orders", "INSERT",
                                       "send order-status", "process order-status", "push status"]
    assert {s.service for s in spans} == {"orders-functions", "orders-websocket"}
    assert order_trace(tmp_path, "another-order") == []
    assert len(list(read_spans(tmp_path))) == 8, "the half-written line is skipped, the other trace read"


def test_the_waterfall_puts_children_under_parents_with_offsets_from_the_first_span(tmp_path: Path) -> None:
    write_order(tmp_path)

    rows = waterfall(order_trace(tmp_path, ORDER))

    assert [(r.depth, r.name) for r in rows] == [
        (0, "POST /api/orders"), (1, "send orders"), (2, "process orders"), (3, "INSERT"),
        (3, "send order-status"), (4, "process order-status"), (5, "push status")]
    assert rows[2].offset_ms == 15 and rows[2].duration_ms == 25
    text = render(rows)
    assert text.splitlines()[0].split()[:4] == ["service", "span", "start", "ms"]
    assert "orders-websocket" in text and "          push status" in text


def test_phases_say_where_the_order_spent_its_time(tmp_path: Path) -> None:
    write_order(tmp_path)

    assert phases(order_trace(tmp_path, ORDER)) == {"intake": 12, "queue": 4, "processing": 25, "toSocket": 15}
    assert phases([]) == {}


def test_a_failed_span_reads_as_an_error(tmp_path: Path) -> None:
    (tmp_path / "x-1.traces.jsonl").write_text(line("x", span("d1", "process orders", 5, 0, 1, error=True,
                                                              correlation_id=ORDER)) + "\n")

    [record] = order_trace(tmp_path, ORDER)

    assert record.status == "error" and record.status_message == "boom"


def test_phases_of_an_order_placed_through_the_pages_proxy(tmp_path: Path) -> None:
    """The page posts through the WebSocket service, whose request span is then the root of the trace."""
    (tmp_path / "p-1.traces.jsonl").write_text(line(
        "orders-websocket",
        span("p1", "POST /api/orders", 2, 0, 20),
        span("p2", "POST", 3, 1, 19, "p1"),
        span("p3", "POST /api/orders", 2, 2, 18, "p2"),
        span("p4", "send orders", 4, 5, 17, "p3", correlation_id=ORDER),
        span("p5", "process orders", 5, 30, 50, "p4", correlation_id=ORDER)) + "\n")

    assert phases(order_trace(tmp_path, ORDER)) == {"intake": 20, "queue": 13, "processing": 20}
