"""One trace per order over real processes: the HTTP request, the broker, processing, SQL, the status event,
the WebSocket service's receipt and the push, read back from the OTLP JSON lines the services export."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from websockets.sync.client import connect

from local_servers.orders_api import BackendAndOperatorAuth, order_body
from local_stack.stack import ROOT, LocalStack, StackPorts
from service_platform.notify_tokens import DEFAULT_KEY_ID, DEV_NOTIFY_TOKEN_SECRET, NotifyTokenSigner
from service_platform.trace_files import SpanRecord, order_trace

pytestmark = pytest.mark.e2e

CALLER_SPAN = "b7ad6b7169203331"


def caller_trace() -> tuple[str, str]:
    """A new trace id for each test, and the ``traceparent`` of the caller's span in it."""
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{CALLER_SPAN}-01"


# The host starts without the Service Bus triggers, so that a test follows its order before it is processed.
HTTP_FUNCTIONS = ["submit_order", "get_order_status", "list_products", "health", "readiness", "openapi_document"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(Path(tmp_path_factory.mktemp("traced")), StackPorts.free(websocket_instances=1),
                         environ={"OTEL_METRIC_EXPORT_INTERVAL": "1000"}, host_functions=HTTP_FUNCTIONS)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def telemetry_dir(stack: LocalStack) -> Path:
    return stack.data_dir / "telemetry"


def spans_until_pushed(stack: LocalStack, correlation_id: str, timeout: float = 20.0) -> list[SpanRecord]:
    """The order's spans once the push is among them and every parent too (each process exports on its own)."""
    deadline = time.monotonic() + timeout
    while True:
        spans = order_trace(telemetry_dir(stack), correlation_id)
        ids = {span.span_id for span in spans} | {CALLER_SPAN}
        complete = all(span.parent_span_id in ids for span in spans)
        if (complete and any(span.name == "push status" for span in spans)) or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def frames_until_terminal(socket) -> list[dict]:
    frames = [json.loads(socket.recv(timeout=60))]
    while frames[-1]["status"] not in ("Completed", "Rejected", "Failed"):
        frames.append(json.loads(socket.recv(timeout=60)))
    return frames


def exported_metrics(stack: LocalStack, service: str) -> set[str]:
    names: set[str] = set()
    for path in telemetry_dir(stack).glob(f"{service}-*.metrics.jsonl"):
        for line in path.read_text().splitlines():
            for resource in json.loads(line)["resourceMetrics"]:
                for scope in resource["scopeMetrics"]:
                    names.update(metric["name"] for metric in scope["metrics"])
    return names


def wait_for_metrics(stack: LocalStack, service: str, wanted: set[str], timeout: float = 15.0) -> None:
    """The metrics are exported every second here (OTEL_METRIC_EXPORT_INTERVAL)."""
    deadline = time.monotonic() + timeout
    while not wanted <= (names := exported_metrics(stack, service)):
        assert time.monotonic() < deadline, f"{service} did not export {sorted(wanted - names)}"
        time.sleep(0.25)


def one(spans: list[SpanRecord], name: str) -> SpanRecord:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, f"expected one {name!r} span, got {[s.name for s in spans]}"
    return found[0]


def test_an_order_is_one_trace_from_the_http_request_to_the_websocket_push(stack: LocalStack) -> None:
    trace_id, traceparent = caller_trace()
    with httpx.Client(base_url=stack.api_url, timeout=30, auth=BackendAndOperatorAuth(stack.identity_url)) as api:
        accepted = api.post("/orders", json=order_body("c-traced", ("SKU-1", 1)),
                            headers={"traceparent": traceparent}).json()
    cid = accepted["correlationId"]
    with connect(accepted["notifyUrl"]) as socket:
        assert json.loads(socket.recv(timeout=30))["status"] == "Accepted"
        stack.host.stop()
        stack.start_host(functions=[])  # every function: the order is processed now, and pushed
        assert frames_until_terminal(socket)[-1]["status"] == "Completed"

    spans = spans_until_pushed(stack, cid)

    assert {span.trace_id for span in spans} == {trace_id}, "the caller's trace goes on through every hop"
    request = one(spans, "POST /api/orders")
    send = one(spans, "send orders")
    process = one(spans, "process orders")
    status_send = one(spans, "send order-status")
    receipt = one(spans, "process order-status")
    push = one(spans, "push status")
    assert (request.kind, request.parent_span_id, request.service) == ("server", CALLER_SPAN, "orders-functions")
    assert (send.kind, send.parent_span_id) == ("producer", request.span_id)
    assert (process.kind, process.parent_span_id) == ("consumer", send.span_id)
    assert (status_send.kind, status_send.parent_span_id) == ("producer", process.span_id)
    assert (receipt.kind, receipt.parent_span_id, receipt.service) == ("consumer", status_send.span_id,
                                                                       "orders-websocket")
    assert (push.parent_span_id, push.status) == (receipt.span_id, "unset")
    sql = [span for span in spans if span.attributes.get("db.system") == "sqlite"]
    assert sql and all(span.parent_span_id == process.span_id for span in sql), "SQL statements of the processing"
    assert any(span.attributes.get("db.system") == "redis" for span in spans), "the intake's Redis calls"

    logged = [json.loads(line) for line in (stack.log_dir / "host.log").read_text().splitlines()
              if line.startswith("{") and cid in line]
    assert logged and all(entry["trace_id"] == trace_id for entry in logged if "trace_id" in entry)
    assert any(entry.get("span_id") == process.span_id for entry in logged), "a log line meets its span"

    tool = subprocess.run([sys.executable, "-m", "local_traces", "trace", cid, "--json", "--dir",
                           str(telemetry_dir(stack))], cwd=ROOT, capture_output=True, text=True, timeout=60)
    shown = json.loads(tool.stdout)
    assert set(shown["phases"]) == {"intake", "queue", "processing", "toSocket"}
    assert len(shown["spans"]) == len(spans) and shown["spans"][0]["name"] == "POST /api/orders"
    wait_for_metrics(stack, "orders-functions", {"orders.accepted", "orders.completed", "orders.latency",
                                                 "orders.invocation.duration"})
    wait_for_metrics(stack, "orders-websocket", {"websocket.connections", "websocket.pushes"})


def test_a_poison_order_is_traced_through_its_deliveries_and_the_dead_letter_queue(stack: LocalStack) -> None:
    """The order comes from a traced producer elsewhere (its context in the message, as the Azure SDKs put it).

    The socket follows the order before the message is sent, so the ``Failed`` event is pushed."""
    if stack._host_functions:  # run on its own: the host runs the triggers too
        stack.host.stop()
        stack.start_host(functions=[])
    trace_id, traceparent = caller_trace()
    cid = str(uuid.uuid4())
    token = NotifyTokenSigner(DEFAULT_KEY_ID, DEV_NOTIFY_TOKEN_SECRET.encode()).issue(cid, 600)
    with connect(f"{stack.ws_url(0)}?correlationId={cid}&token={token}") as socket:
        with ServiceBusClient.from_connection_string(stack.connection_string) as client, \
                client.get_queue_sender("orders") as sender:
            sender.send_messages(ServiceBusMessage(
                b"{not json", message_id=cid, correlation_id=cid, session_id="c-traced-poison",
                content_type="application/json", application_properties={"Diagnostic-Id": traceparent}))
        assert frames_until_terminal(socket)[-1]["status"] == "Failed"

    spans = spans_until_pushed(stack, cid)

    assert {span.trace_id for span in spans} == {trace_id}
    deliveries = [span for span in spans if span.name == "process orders"]
    assert len(deliveries) >= 2 and all(span.status == "error" and span.parent_span_id == CALLER_SPAN
                                        for span in deliveries), "every failed delivery is an error span"
    dead_letter = one(spans, "process orders/$DeadLetterQueue")
    assert (dead_letter.kind, dead_letter.parent_span_id, dead_letter.status) == ("consumer", CALLER_SPAN, "unset")
    status_send = one(spans, "send order-status")
    assert status_send.parent_span_id == dead_letter.span_id
    receipt = one(spans, "process order-status")
    assert receipt.parent_span_id == status_send.span_id
    assert one(spans, "push status").parent_span_id == receipt.span_id
    wait_for_metrics(stack, "orders-functions", {"orders.failed", "orders.dead_lettered"})
