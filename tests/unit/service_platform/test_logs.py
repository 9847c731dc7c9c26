"""One log schema for every process, and its readable console rendering."""

from __future__ import annotations

import io
import json
import logging

from service_platform.logs import JsonFormatter, configure_json_logging, console_line


def _record(logger_name: str = "orders.service_layer", **extra) -> logging.LogRecord:
    record = logging.LogRecord(logger_name, logging.WARNING, __file__, 1, "order %s", ("accepted",), None)
    record.__dict__.update(extra)
    return record


def test_every_service_writes_the_same_field_names():
    lines = [json.loads(JsonFormatter(service).format(_record(correlationId="cid-1")))
             for service in ("functions", "websocket", "broker")]
    assert [list(line)[:6] for line in lines] == [["time", "level", "service", "logger", "message",
                                                   "correlationId"]] * 3
    assert {line["service"] for line in lines} == {"functions", "websocket", "broker"}
    assert lines[0]["time"].endswith("Z") and lines[0]["message"] == "order accepted"


def test_context_fields_and_static_fields_are_added():
    formatter = JsonFormatter("functions", fields={"instanceId": "i-1"},
                              context=lambda: {"invocationId": "inv-9", "sessionId": None})
    line = json.loads(formatter.format(_record()))
    assert line["instanceId"] == "i-1" and line["invocationId"] == "inv-9" and "sessionId" not in line


def test_configure_writes_json_lines_to_the_stream():
    stream = io.StringIO()
    configure_json_logging("broker", "info", stream=stream, logger="test_service_platform_logs")
    logging.getLogger("test_service_platform_logs").info("ready", extra={"port": 5682})
    line = json.loads(stream.getvalue())
    assert (line["service"], line["level"], line["message"], line["port"]) == ("broker", "INFO", "ready", 5682)


def test_console_line_is_readable_and_keeps_the_correlation_id():
    raw = JsonFormatter("functions").format(_record(correlationId="cid-1", status="Completed"))
    shown = console_line(raw)
    assert "functions" in shown and "WARNING" in shown and "order accepted" in shown
    assert "correlationId=cid-1" in shown and "status=Completed" in shown
    assert not shown.lstrip().startswith("{")


def test_console_line_passes_other_output_through():
    assert console_line("Uvicorn running\n", default_service="websocket").endswith("websocket Uvicorn running")
