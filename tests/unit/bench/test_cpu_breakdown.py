"""The benchmarks' CPU breakdown puts each py-spy sample in the component a reader would name."""

from bench.cpu_breakdown import ROOT, shares

SITE = "/venv/lib/python3.13/site-packages"
STDLIB = "/python/lib/python3.13"


def frame(function: str, file: str) -> str:
    return f"{function} ({file}:1)"


def stack(*frames: str) -> str:
    return ";".join(frames)


HOST = frame("run_host", f"{ROOT}/local_functions_host/host.py")
WORKER_THREAD = frame("_worker", f"{STDLIB}/concurrent/futures/thread.py")
HANDLER = frame("process_order", f"{ROOT}/orders/service_layer/handlers.py")


def test_samples_inside_the_function_body_are_split_by_what_the_body_was_doing():
    raw = [
        stack(WORKER_THREAD, HANDLER, frame("reserve_stock", f"{ROOT}/orders/adapters/sql/store.py"),
              frame("execute", f"{SITE}/sqlalchemy/engine/base.py")) + " 30",
        stack(WORKER_THREAD, HANDLER, frame("info", f"{STDLIB}/logging/__init__.py")) + " 10",
        stack(WORKER_THREAD, HANDLER, frame("_decide", f"{ROOT}/orders/service_layer/handlers.py")) + " 10",
        stack(HOST, frame("_flush_while_pending", f"{ROOT}/orders/adapters/servicebus_batch_sender.py"),
              frame("encode_value", f"{SITE}/azure/servicebus/_pyamqp/_encode.py")) + " 20",
    ]
    result = shares(raw)
    assert result["function body: SQL"] == 30 / 70
    assert result["function body: logging"] == 10 / 70
    assert result["function body: the rest"] == 10 / 70
    assert result["function body: Service Bus send (the order in intake, its status event in processing)"] == 20 / 70
    assert abs(sum(result.values()) - 1) < 1e-9


def test_samples_outside_the_function_go_to_the_worker_library_the_sdk_or_the_host():
    raw = [
        stack(HOST, frame("invocation_request", f"{SITE}/azure_functions_runtime/handle_event.py")) + " 1",
        stack(HOST, frame("receive_messages", f"{SITE}/azure/servicebus/aio/_servicebus_receiver_async.py")) + " 2",
        stack(HOST, frame("export", f"{SITE}/opentelemetry/exporter/otlp/proto/http/trace_exporter/__init__.py")) + " 3",
        stack(HOST, frame("select", f"{STDLIB}/selectors.py")) + " 4",
    ]
    result = shares(raw)
    assert result["worker library: invocation and bindings"] == 0.1
    assert result["Service Bus SDK: receive, settle, sessions"] == 0.2
    assert result["telemetry: spans, metrics and their export"] == 0.3
    assert result["host: the rest (event loop, listeners)"] == 0.4


def test_no_samples_give_no_shares():
    assert shares(["", "garbage"]) == {}
