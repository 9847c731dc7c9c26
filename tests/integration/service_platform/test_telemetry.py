"""Exporters chosen by configuration alone, each checked against a real receiver on a local socket.

Every case runs in a fresh interpreter: OpenTelemetry's providers are set once per process, as in each
service. Azure Monitor's exporter sends to a local HTTP server given as the connection string's
``IngestionEndpoint``, so nothing reaches Azure.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[3]
TELEMETRY_VARIABLES = ("APPLICATIONINSIGHTS_CONNECTION_STRING", "OTEL_EXPORTER_OTLP_ENDPOINT", "LOCAL_TELEMETRY_DIR",
                       "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED",
                       "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
ORDER = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
KEY = "11111111-2222-3333-4444-555555555555"  # an Application Insights instrumentation key (a GUID)

SEND_ONE_ORDER_SPAN = f"""
import json
from service_platform.telemetry import configure_telemetry
from service_platform.message_tracing import send_span
from orders.adapters.order_metrics import OrderMetrics
telemetry = configure_telemetry("orders-functions")
with send_span("orders", message_id="m-1", correlation_id="{ORDER}") as properties:
    pass
OrderMetrics().accepted()
telemetry.shutdown()
print(json.dumps({{"exporters": telemetry.exporters, "properties": properties}}))
"""


def run(code: str, **env: str) -> dict:
    clean = {key: value for key, value in os.environ.items() if key not in TELEMETRY_VARIABLES}
    # Azure Monitor's exporter keeps unsent telemetry under the temporary directory: a private one per case.
    with tempfile.TemporaryDirectory() as temporary:
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, "TMPDIR": temporary, **env},
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


class Receiver:
    """An HTTP server that keeps every POST (path and body) and answers 200."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                reply = b'{"itemsReceived": 1, "itemsAccepted": 1, "errors": []}'
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[bytes]:
        return [body for received_path, body in self.received if received_path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_without_an_exporter_nothing_is_configured_and_the_context_still_passes_on(tmp_path: Path) -> None:
    outcome = run("""
import json
from opentelemetry import trace
from service_platform.telemetry import configure_telemetry
from service_platform.message_tracing import send_span
import function_app.app  # indexing the app configures nothing
with send_span("orders", message_id="m", fallback_traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") as p:
    pass
print(json.dumps({"configured": configure_telemetry("x") is not None, "provider": type(trace.get_tracer_provider()).__name__,
                  "properties": p}))
""")

    assert outcome["configured"] is False and outcome["provider"] == "ProxyTracerProvider"
    assert outcome["properties"]["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert outcome["properties"]["Diagnostic-Id"] == outcome["properties"]["traceparent"]


def test_importing_the_app_with_an_exporter_set_opens_nothing(tmp_path: Path) -> None:
    outcome = run("""
import json
import function_app.app
from service_platform.telemetry import configured
print(json.dumps({"configured": configured() is not None}))
""", LOCAL_TELEMETRY_DIR=str(tmp_path))

    assert outcome == {"configured": False}
    assert list(tmp_path.iterdir()) == [], "the worker indexes the app: nothing may be set up at import"


def test_azure_monitor_is_configured_from_the_connection_string(receiver: Receiver) -> None:
    key = KEY
    outcome = run(SEND_ONE_ORDER_SPAN + """
from opentelemetry import trace
from azure.core.settings import settings
exporters = [getattr(getattr(p, "_batch_processor", None), "_exporter", None)
             for p in trace.get_tracer_provider()._active_span_processor._span_processors]
exporter = next(e for e in exporters if e is not None)
print(json.dumps({"type": type(exporter).__name__, "key": exporter._instrumentation_key,
                  "endpoint": exporter._endpoint, "sdkTracing": settings.tracing_implementation() is not None,
                  "sampler": trace.get_tracer_provider().sampler.get_description()}))
""", APPLICATIONINSIGHTS_CONNECTION_STRING=f"InstrumentationKey={key};IngestionEndpoint={receiver.url}/",
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true")

    assert outcome == {"type": "AzureMonitorTraceExporter", "key": key, "endpoint": f"{receiver.url}/",
                       "sdkTracing": False, "sampler": outcome["sampler"]}
    assert outcome["sampler"].startswith("ParentBased{root:AlwaysOnSampler,"), \
        "no sampler set: OpenTelemetry's default, not the distro's 5 traces a second"
    sent = b"".join(receiver.bodies("/v2.1/track"))
    assert b"send orders" in sent and ORDER.encode() in sent, "the span was exported to the ingestion endpoint"
    assert b"orders.accepted" in sent, "so was the metric"


@pytest.mark.parametrize(("ratio", "exported"), [("1.0", True), ("0", False)])
def test_azure_monitor_follows_the_standard_ratio_sampler_of_the_aks_settings(receiver: Receiver, ratio: str,
                                                                           exported: bool) -> None:
    """``parentbased_traceidratio`` (the AKS base and the prod overlay) is OpenTelemetry's spelling, which the
    distro does not know: left to it, every service would sample at most 5 traces a second."""
    outcome = run(SEND_ONE_ORDER_SPAN.replace("telemetry.shutdown()", """
from opentelemetry import trace
sampler = trace.get_tracer_provider().sampler.get_description()
telemetry.shutdown()""").replace('"properties": properties}', '"properties": properties, "sampler": sampler}'),
        APPLICATIONINSIGHTS_CONNECTION_STRING=f"InstrumentationKey={KEY};IngestionEndpoint={receiver.url}/",
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true", OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG=ratio)

    assert outcome["sampler"].startswith(f"ParentBased{{root:TraceIdRatioBased{{{float(ratio)}}}")
    assert (b"send orders" in b"".join(receiver.bodies("/v2.1/track"))) is exported


def test_otlp_exports_spans_and_metrics_to_the_endpoint(receiver: Receiver) -> None:
    outcome = run(SEND_ONE_ORDER_SPAN, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_SERVICE_NAME="intake-7")

    assert outcome["exporters"] == ["otlp"]
    [traces] = receiver.bodies("/v1/traces")
    request = ExportTraceServiceRequest.FromString(traces)
    [resource] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    [exported] = [span for scope in resource.scope_spans for span in scope.spans]
    attributes = {a.key: a.value.string_value for a in exported.attributes}
    assert service == "intake-7"
    assert exported.name == "send orders" and attributes["orders.correlation_id"] == ORDER
    assert outcome["properties"]["traceparent"].startswith(f"00-{exported.trace_id.hex()}-{exported.span_id.hex()}-")
    metrics = ExportMetricsServiceRequest.FromString(receiver.bodies("/v1/metrics")[-1])
    names = {m.name for r in metrics.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert "orders.accepted" in names


def test_the_sampler_is_the_standard_configuration_and_follows_a_sampled_parent(tmp_path: Path) -> None:
    outcome = run("""
import json
from service_platform.telemetry import configure_telemetry
from service_platform.message_tracing import process_span
telemetry = configure_telemetry("x")
with process_span("orders", {}, correlation_id="root-order"):
    pass
with process_span("orders", {"Diagnostic-Id": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
                  correlation_id="child-order"):
    pass
telemetry.shutdown()
print(json.dumps({}))
""", LOCAL_TELEMETRY_DIR=str(tmp_path), OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0")

    written = "".join(path.read_text() for path in tmp_path.glob("*.traces.jsonl"))
    assert outcome == {}
    assert "child-order" in written and "0af7651916cd43dd8448eb211c80319c" in written
    assert "root-order" not in written, "a ratio of 0 samples no new trace"


SQL_STATEMENT_IN_A_PROCESS_SPAN = """
import io, json, logging
from sqlalchemy import create_engine, text
from opentelemetry import trace
from service_platform.logs import configure_json_logging
from service_platform.telemetry import configure_telemetry, instrument_sql_engine
from service_platform.message_tracing import process_span
telemetry = configure_telemetry("x")
stream = io.StringIO()
configure_json_logging("x", stream=stream)
engine = create_engine("sqlite://")
instrument_sql_engine(engine)
with process_span("orders", {}, correlation_id="o-1") as span:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    logging.getLogger("orders").info("processed")
context = span.get_span_context()
logging.getLogger("orders").info("outside")
telemetry.shutdown()
lines = [json.loads(line) for line in stream.getvalue().splitlines() if '"orders"' in line]
print(json.dumps({"lines": lines, "trace": format(context.trace_id, "032x"), "span": format(context.span_id, "016x")}))
"""


def test_a_disabled_instrumentation_makes_no_spans_and_the_others_keep_working(tmp_path: Path) -> None:
    outcome = run(SQL_STATEMENT_IN_A_PROCESS_SPAN, LOCAL_TELEMETRY_DIR=str(tmp_path),
                  OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="redis, sqlalchemy")
    spans = [json.loads(line) for path in tmp_path.glob("*.traces.jsonl") for line in path.read_text().splitlines()]
    names = [span["name"] for batch in spans for r in batch["resourceSpans"] for s in r["scopeSpans"]
             for span in s["spans"]]
    assert names == ["process orders"], "the statement made no span, the processing span is there"
    assert outcome["lines"][0]["span_id"] == outcome["span"], "log lines still carry the span's ids"


def test_sql_statements_are_spans_and_log_lines_carry_the_span_ids(tmp_path: Path) -> None:
    outcome = run(SQL_STATEMENT_IN_A_PROCESS_SPAN, LOCAL_TELEMETRY_DIR=str(tmp_path))

    inside, outside = outcome["lines"]
    assert inside["trace_id"] == outcome["trace"] and inside["span_id"] == outcome["span"]
    assert "trace_id" not in outside and not any(key.startswith("otel") for key in inside)
    spans = [json.loads(line) for path in tmp_path.glob("*.traces.jsonl") for line in path.read_text().splitlines()]
    names = {span["name"]: span for batch in spans for r in batch["resourceSpans"] for s in r["scopeSpans"]
             for span in s["spans"]}
    assert names["SELECT"]["parentSpanId"] == outcome["span"], "the statement is a child of the processing span"
