"""Order pipeline benchmark (not a test): prints a table.

Measured in one run, on the whole system started as real processes (broker, Redis, SQLite, local host):

- intake: ``POST /api/orders`` at ``--connections`` keep-alive connections for ``--duration`` seconds against
  one local host process serving only the HTTP functions, next to a baseline ASGI app that answers 202 on the
  same server stack (uvicorn on uvloop with httptools, configured as the local host configures it); then
  the open-loop sender at half the rate the local host reached, each request timed from when it was due;
- processing: the orders intake accepted, still queued, processed by one host process running only the Service
  Bus functions; orders/s from the first to the last order written (SQL timestamps); next to the same number of
  orders consumed by a bare consumer (``bench/bare_consumer.py``: SDK session receivers with the host's session
  settings, one SQLite insert, complete) on the same broker in the same run;
- invocation cost: CPU per invocation of no-op functions through the worker library, next to the function
  alone and to the host's former own conversion (bench/invocation_cost.py);
- accepted→Completed latency at fixed offered rates (``--rates``), spread over ``--customers`` customers, sent
  open-loop by a separate process against one host running all functions;
- journey: orders at fixed offered rates (``--journey-rates``), Poisson arrivals over ``--journey-customers``
  customers picked at random, each followed on its own socket with the 202's ``notifyUrl`` on one WebSocket
  service instance (``bench/journey.py``): due→202, due→row committed and due→terminal status on the socket,
  how many terminal statuses were pushed (the order committed after the socket subscribed), and CPU per order
  of host, broker and WebSocket service; intake, processing and push together, where the phases above measure
  them apart;
- capacity (``--only capacity``, not part of the default run): for each of ``--capacity-customers`` (50, 1,000
  and 10,000 by default; with 10,000 nearly every order is its customer's only one) a stack of its own and one
  host with all functions; the offered rate rises by half a step at a time while every order is processed with
  accepted→Completed p99 ≤ 1 s, one more step tries between the last rate sustained and the first one not, and
  then half the highest sustained rate is offered; rows carry host and broker CPU per order
- tracing: intake and processing CPU per order with OpenTelemetry off and on (every trace sampled, spans and
  metrics exported as OTLP JSON lines, as ``scripts/run`` does), one stack each in the same run.

Tracing is off in every other phase (``LocalStack(telemetry=False)``), so their figures compare with earlier runs.

The load generator for intake is ``wrk`` (C, event-driven; a Lua script varies the customer and counts 202s):
at 64 connections it needs a fraction of a core, where a Python client would need more CPU than the server
it measures. Install it with ``apt-get install -y wrk``. The fixed-rate sender is a small asyncio client
over raw keep-alive connections (a few hundred requests/s cost it little).

Each phase also reports the CPU the measured process used per request or order (from /proc), which stays
meaningful on a machine shared with other work, where requests/s alone would not. The intake, processing
and capacity phases repeat one pass of their load (intake and each baseline, processing and the bare
consumer, the half-capacity step) with py-spy sampling the process (``bench/cpu_breakdown.py``), and a table
splits its CPU per order by component: function body (SQL, Service Bus send, Redis, logging), worker library,
Service Bus SDK, HTTP server, telemetry. The reported rates and latencies come from the passes py-spy did
not watch.

    .venv/bin/python -m bench.pipeline_bench            # full run, about four minutes on 2 cores
    .venv/bin/python -m bench.pipeline_bench --quick    # smaller figures, for a smoke run (2-3 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cpu_breakdown import COMPONENTS, Sampler
from bench.journey import JourneyResult, follow, summarize
from bench.measure import ROOT, cpu_seconds, load_average, machine, note, percentile
from local_servers.ports import popen_listening, wait_for_http
from service_platform.inherited_socket import inherited_listener
from service_platform.trace_files import read_spans

HTTP_FUNCTIONS = ["submit_order", "get_order_status", "list_products", "health"]
PROCESSING_FUNCTIONS = ["process_order", "handle_dead_lettered_order"]
SERVICE_BUS_SETTING = "AzureFunctionsJobHost__extensions__serviceBus__"

TARGETS = {
    "intake_ratio": 0.2,  # of bare uvicorn's 202/s in the same run
    "intake_open_loop_p99_ms": 25.0,
    "processing_ratio": 0.5,  # of the bare consumer's orders/s in the same run
    "latency_p50_ms": 50.0,
    "latency_p99_ms": 250.0,
}
# The capacity phase's bar: a rate counts as sustained while accepted→Completed p99 stays within this.
CAPACITY_P99_MS = 1000.0

WRK_SCRIPT = r"""
-- POST /api/orders with the customer cycling over N customers; counts 202s per thread.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  customers = tonumber(args[1]) or 50
  headers = {["Content-Type"] = "application/json"}
  if args[2] then headers["Authorization"] = "Bearer " .. args[2] end
  accepted = 0
  other = 0
  counter = 0
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"customerId":"bench-%d","currency":"EUR","items":[{"sku":"SKU-1","quantity":1}]}', counter % customers)
  return wrk.format("POST", "/api/orders", headers, body)
end
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    o = o + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"accepted":%d,"other":%d,"errors":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, a, o, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


# ------------------------------------------------------------------------------------------ small helpers
















# ------------------------------------------------------------------------------------------ child roles


async def _baseline_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body and answers 202 with a small JSON body: the floor under any intake."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"status":"Accepted"}'
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve_baseline() -> None:
    """uvicorn configured and run as ``local_functions_host.host`` runs it: its own uvloop loop, httptools
    (uvicorn's choice when installed), no access log, no server header, no lifespan, a pre-bound socket
    (handed over by the benchmark, as the local run hands the host its socket)."""
    import uvicorn
    import uvloop

    sock = inherited_listener()
    assert sock is not None, "started by the benchmark with a socket to serve"
    config = uvicorn.Config(_baseline_app, log_config=None, access_log=False, server_header=False, lifespan="off")
    server = uvicorn.Server(config)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(server.serve(sockets=[sock]))


def arrival_times(rate: float, count: int, arrivals: str, rng: random.Random) -> list[float]:
    """Seconds from the start at which each order is due: evenly spaced, or a Poisson process of that rate."""
    if arrivals == "even":
        return [number / rate for number in range(count)]
    times, now = [], 0.0
    for _ in range(count):
        now += rng.expovariate(rate)
        times.append(now)
    return times


def customer_picks(customers: int, count: int, pick: str, rng: random.Random) -> list[int]:
    """Which customer places each order: in turn, uniformly at random, or skewed (a few customers place most
    orders: Zipf-like, weight 1/rank)."""
    if pick == "round-robin":
        return [number % customers for number in range(count)]
    if pick == "random":
        return [rng.randrange(customers) for _ in range(count)]
    weights = [1 / rank for rank in range(1, customers + 1)]
    return rng.choices(range(customers), weights=weights, k=count)


async def send_at_rate(port: int, rate: float, duration: float, warmup: float, customers: int,
                       connections: int, token: str, arrivals: str = "even", pick: str = "round-robin",
                       follow_seconds: float | None = None) -> None:
    """Open-loop sender: each order is due at its arrival time whatever happened to earlier ones; a free
    keep-alive connection takes it. Prints one JSON line: per order its due time (wall clock), 202 time,
    correlationId and whether it was sent during the first ``warmup`` seconds (not measured).

    ``follow_seconds``: each accepted order is also followed on its own socket with the 202's ``notifyUrl``
    (``bench.journey.follow``), for at most that long after the last order was due."""
    warmup_orders = round(rate * warmup)
    total = warmup_orders + round(rate * duration)
    rng = random.Random(20261201)  # the same load in every run
    offsets = arrival_times(rate, total, arrivals, rng)
    picks = customer_picks(customers, total, pick, rng)
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    wall_offset = time.time() - time.monotonic()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await due.get()) is not None:
            number, due_at = item
            body = json.dumps({"customerId": f"rate-{picks[number]}", "currency": "EUR",
                               "items": [{"sku": "SKU-1", "quantity": 1}]}).encode()
            writer.write(b"POST /api/orders HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (token.encode(), len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            answered = time.monotonic()
            status = int(head.split(b" ", 2)[1])
            if status == 202:
                answer = json.loads(payload)
                results.append({"correlationId": answer["correlationId"], "warmup": number < warmup_orders,
                                "due": due_at + wall_offset, "accepted": answered + wall_offset})
                if follow_seconds is not None:
                    results[-1]["notifyUrl"] = answer["notifyUrl"]
                    followers.append(asyncio.create_task(follow(results[-1], follow_until)))
            else:
                failures.append(f"{status} {payload[:200]!r}")

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    followers: list[asyncio.Task[None]] = []
    start = time.monotonic() + 0.2
    follow_until = start + (offsets[-1] if offsets else 0.0) + (follow_seconds or 0.0)
    for number in range(total):
        due_at = start + offsets[number]
        delay = due_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((number, due_at))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    seconds = time.monotonic() - start - (offsets[warmup_orders - 1] if warmup_orders else 0.0)
    await asyncio.gather(*followers)
    for order in results:
        order.pop("notifyUrl", None)
    print(json.dumps({"orders": results, "failures": failures, "sent": total - warmup_orders, "seconds": seconds}),
          flush=True)


# ------------------------------------------------------------------------------------------ measurements


@dataclass
class IntakeResult:
    name: str
    requests_per_s: float
    accepted: int
    other: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_us: float  # CPU of the measured server process per request
    load_cpu_percent: float  # wrk's own CPU use, to show it was not the bottleneck
    queued: int | None = None  # orders the broker holds afterwards (intake only)
    broker_cpu_us: float | None = None  # broker CPU per accepted order (intake only)
    #: Share of the server's GIL samples per component (bench.cpu_breakdown); empty when not sampled.
    components: dict[str, float] = field(default_factory=dict)
    sampling_error: str | None = None


@dataclass
class ProcessingResult:
    orders: int
    orders_per_s: float
    wall_seconds: float
    host_cpu_us: float
    completed: int
    broker_cpu_us: float = 0.0
    #: Share of the process's GIL samples per component (bench.cpu_breakdown); empty when not sampled.
    components: dict[str, float] = field(default_factory=dict)
    sampling_error: str | None = None


@dataclass
class LatencyResult:
    offered_rate: float
    sent: int
    achieved_rate: float
    intake_p50_ms: float
    intake_p99_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    completed: int
    failures: int
    host_cpu_percent: float
    host_cpu_us: float = float("nan")
    broker_cpu_us: float = float("nan")
    #: Share of the host's GIL samples per component, when the step was sampled (bench.cpu_breakdown).
    components: dict[str, float] = field(default_factory=dict)
    sampling_error: str | None = None

    @property
    def sustained(self) -> bool:
        """Every measured order Completed (or Rejected) with accepted→Completed p99 within CAPACITY_P99_MS."""
        return self.failures == 0 and self.p99_ms <= CAPACITY_P99_MS


@dataclass
class CapacityResult:
    """The highest offered rate sustained over ``customers``, then half of it."""
    customers: int
    steps: list[LatencyResult]
    best: LatencyResult | None
    half: LatencyResult | None


@dataclass
class IntakeOpenLoop:
    """POST→202 at a fixed offered rate, each request timed from when it was due (open loop)."""
    offered_rate: float
    achieved_rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    accepted: int
    failures: int
    host_cpu_us: float


@dataclass
class Report:
    capacity: list[CapacityResult] = field(default_factory=list)
    intake: list[IntakeResult] = field(default_factory=list)
    processing: ProcessingResult | None = None
    bare_processing: ProcessingResult | None = None  # the processing row's baseline (bench/bare_consumer.py)
    latency: list[LatencyResult] = field(default_factory=list)
    # CPU of validating one bearer token seen for the first time, and one presented again (remembered)
    validation_cpu_us: tuple[float, float] | None = None
    intake_open_loop: IntakeOpenLoop | None = None
    # (path, median µs of CPU per invocation, spread over the rounds), from bench/invocation_cost.py
    invocation_us: list[tuple[str, float, float]] = field(default_factory=list)
    tracing: list[TracingResult] = field(default_factory=list)
    journey: list[JourneyResult] = field(default_factory=list)


@dataclass
class TracingResult:
    name: str
    intake_cpu_us: float
    intake_rps: float
    processing_cpu_us: float
    processing_rps: float
    spans_per_order: float


def measure_tracing(options: argparse.Namespace, script: Path, data_dir: Path) -> list[TracingResult]:
    """The same steps on one stack per variant, tracing off first: queue orders, process them, then intake
    under wrk."""
    results = []
    sink, sink_port = start_otlp_sink()
    # The OTLP rows: the stack's own file export off, OTLP on, the worker continuing the host's context.
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}", "PYTHON_ENABLE_OPENTELEMETRY": "true"}
    seen = {"spans": 0, "send orders": 0}
    variants = [("tracing off", False, {}),
                ("tracing on, 100% sampled, OTLP/HTTP", False, {**otlp, "OTEL_TRACES_SAMPLER": "always_on"}),
                ("tracing on, 100% sampled, JSON lines file", True, {"OTEL_TRACES_SAMPLER": "always_on"}),
                ("tracing on, 20% sampled (the prod overlay), OTLP/HTTP", False,
                 {**otlp, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.2"}),
                ("tracing on, 0% sampled (instrumentation alone), OTLP/HTTP", False,
                 {**otlp, "OTEL_TRACES_SAMPLER": "always_off"}),
                ("tracing on, 100% sampled, OTLP/HTTP, no Redis or SQL spans", False,
                 {**otlp, "OTEL_TRACES_SAMPLER": "always_on",
                  "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "redis,sqlalchemy"})]
    for index, (name, files, environ) in enumerate(variants):
        folder = data_dir / f"variant-{index}"
        with running(Bench(options, folder, environ=environ, telemetry=files)) as bench:
            note(f"{name}:")
            bench.preload(options.tracing_orders)
            processed = bench.processing()
            bench.restart_host(HTTP_FUNCTIONS)
            intake = bench.intake(script)
            if "OTEL_EXPORTER_OTLP_ENDPOINT" in environ:
                bench.stack.host.stop()  # it exports the spans it still holds as it stops
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/counts", timeout=10) as answer:
                    counts = json.load(answer)
                spans, sends = counts["spans"] - seen["spans"], counts["send orders"] - seen["send orders"]
                seen = counts
            else:
                names = [span.name for span in read_spans(folder / "telemetry")]
                spans, sends = len(names), names.count("send orders")  # one send per accepted order
            results.append(TracingResult(name, intake.server_cpu_us, intake.requests_per_s, processed.host_cpu_us,
                                         processed.orders_per_s, spans / sends if sends else float("nan")))
    sink.terminate()
    sink.wait(10)
    return results


def start_otlp_sink() -> tuple[subprocess.Popen, int]:
    """``serve_otlp_sink`` in a process of its own, on a socket handed to it; returns it and its port."""
    sink, port = popen_listening([sys.executable, "-m", "bench.pipeline_bench", "--serve-otlp-sink"], env=os.environ,
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_http(f"http://127.0.0.1:{port}/counts", sink)
    return sink, port


def serve_otlp_sink() -> None:
    """An OTLP/HTTP receiver that counts the spans it is sent (all, and ``send orders``) and keeps nothing;
    ``GET /counts`` answers them. Its CPU is not measured."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    counts = {"spans": 0, "send orders": 0}

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                names = [span.name for r in request.resource_spans for s in r.scope_spans for span in s.spans]
                counts["spans"] += len(names)
                counts["send orders"] += names.count("send orders")
            self._answer(b"", "application/x-protobuf")

        def do_GET(self) -> None:
            self._answer(json.dumps(counts).encode(), "application/json")

        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink, bind_and_activate=False)
    server.socket.close()
    inherited = inherited_listener()
    assert inherited is not None, "started by start_otlp_sink with a socket to serve"
    server.socket = inherited
    server.serve_forever()


def measure_invocation_cost(messages: int) -> list[tuple[str, float, float]]:
    """bench/invocation_cost.py in a child process (the worker library keeps global state)."""
    note(f"invocation cost: {messages:,} messages per path, 5 rounds ...")
    result = subprocess.run([sys.executable, "-m", "bench.pipeline_bench", "--invocation-costs", str(messages)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"the invocation cost phase failed:\n{result.stderr[-3000:]}")
    return [tuple(row) for row in json.loads(result.stdout.splitlines()[-1])]


def run_wrk(port: int, seconds: float, connections: int, customers: int, server_pid: int, name: str,
            script: Path, token: str | None = None, *, sample: bool = False) -> IntakeResult:
    """``sample``: py-spy samples the server for the CPU breakdown. It takes CPU of the machine's cores from
    the server and wrk, so a sampled run's rate and latency are not the ones to report."""
    threads = 2
    sampler = Sampler(server_pid)
    if sample:
        sampler.start()
    before_cpu = cpu_seconds(server_pid)
    before_children = os.times()
    try:
        result = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s", "--timeout", "10s",
             "-s", str(script), f"http://127.0.0.1:{port}", "--", str(customers), *([token] if token else [])],
            capture_output=True, text=True, check=False)
    finally:
        components = sampler.stop()
    after_children = os.times()
    server_cpu = cpu_seconds(server_pid) - before_cpu
    line = next((line for line in result.stdout.splitlines() if line.startswith("WRK_RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    data = json.loads(line.removeprefix("WRK_RESULT "))
    elapsed = data["duration_us"] / 1e6
    wrk_cpu = (after_children.children_user - before_children.children_user
               + after_children.children_system - before_children.children_system)
    return IntakeResult(
        name=name,
        requests_per_s=data["accepted"] / elapsed if name != "baseline" else data["requests"] / elapsed,
        accepted=data["accepted"], other=data["other"], errors=data["errors"],
        p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000, p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        server_cpu_us=server_cpu / max(1, data["requests"]) * 1e6,
        load_cpu_percent=wrk_cpu / elapsed * 100,
        components=components, sampling_error=sampler.error,
    )


def measure_baseline(options: argparse.Namespace, script: Path) -> IntakeResult:
    child, port = popen_listening([sys.executable, "-m", "bench.pipeline_bench", "--serve-baseline"], env=os.environ,
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", child)
        note(f"baseline: warming up {options.warmup:.0f}s, then {options.duration:.0f}s at "
             f"{options.connections} connections")
        run_wrk(port, options.warmup, options.connections, options.customers, child.pid, "warm-up", script)
        result = run_wrk(port, options.duration, options.connections, options.customers, child.pid, "baseline",
                         script)
        note("baseline: once more, sampled for the CPU breakdown")
        sampled = run_wrk(port, options.duration, options.connections, options.customers, child.pid, "baseline",
                          script, sample=True)
        carry_breakdown(result, sampled)
        return result
    finally:
        child.terminate()
        child.wait(10)


class Bench:
    """The stack under test and the steps run against it."""

    def __init__(self, options: argparse.Namespace, data_dir: Path, environ: dict[str, str] | None = None,
                 telemetry: bool = False, websockets: int = 0) -> None:
        """``telemetry``: the stack's own tracing into files (``scripts/run``'s); off but for the tracing phase.
        ``websockets``: WebSocket service instances (the journey phase's one; none elsewhere)."""
        from local_stack.stack import LocalStack, StackPorts

        self.options = options
        environ = {**(environ or {}), **{f"{SERVICE_BUS_SETTING}{key}": value for key, value in options.service_bus}}
        # A few customers send thousands of orders a minute here: the per-customer abuse limits would refuse
        # almost all of them, so they are out of the way (their Redis round trips still run).
        environ |= {"CUSTOMER_MAX_ORDERS_PER_MINUTE": "1000000000", "CUSTOMER_MAX_ORDERS_IN_FLIGHT": "1000000000"}
        # Every follower's socket comes from this machine's one address: the per-client cap is out of the way.
        environ |= {"WS_MAX_CONNECTIONS_PER_CLIENT": "1000000"}
        self.stack = LocalStack(data_dir, StackPorts.free(websocket_instances=websockets), environ=environ,
                                host_functions=HTTP_FUNCTIONS, telemetry=telemetry)
        self._engine: Any = None

    # -- stack control

    def start(self) -> None:
        note("starting broker, Redis and a local host with the HTTP functions only ...")
        self.stack.start()
        from sqlalchemy import create_engine

        self._engine = create_engine(self.stack.env["SQL_URL"])
        # Every order of the run must be able to complete: no order may be rejected for want of stock.
        self.sql("UPDATE products SET stock = 1000000000")

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self.stack.stop()

    def restart_host(self, functions: list[str] | None) -> None:
        host = self.stack.host
        assert host is not None
        host.stop()
        arguments = host.args
        if "--functions" in arguments:
            at = arguments.index("--functions")
            arguments = arguments[:at] + arguments[at + 2:]
        host.args = arguments + (["--functions", ",".join(functions)] if functions else [])
        self.stack.start_host()
        self._wait_for_listeners()

    def _wait_for_listeners(self, timeout: float = 30.0) -> None:
        """The HTTP port opens before the Service Bus receivers have connected; wait for those too."""
        import urllib.request

        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.stack.ports.host}/admin/host/status"
        status: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=5) as response:
                status = json.load(response)
                if status["state"] == "Running" and all(
                        listener["state"] == "Listening" for listener in status["listeners"]):
                    return
            time.sleep(0.2)
        note(f"warning: the host's Service Bus listeners did not all report Listening within {timeout:.0f}s "
             f"(status: {status}); measuring anyway")

    @property
    def host_pid(self) -> int:
        assert self.stack.host is not None and self.stack.host.process is not None
        return self.stack.host.process.pid

    @property
    def broker_pid(self) -> int:
        assert self.stack.broker is not None and self.stack.broker.process is not None
        return self.stack.broker.process.pid

    @property
    def websocket_pid(self) -> int:
        process = self.stack.websockets[0].process
        assert process is not None
        return process.pid

    def sql(self, statement: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        with self._engine.begin() as connection:
            result = connection.execute(text(statement), params)
            return list(result) if result.returns_rows else []

    def queued(self, queue: str = "orders") -> int:
        import urllib.request

        with urllib.request.urlopen(self.stack.broker_status_url, timeout=10) as response:
            return int(json.load(response)[queue]["active"])

    def wait_until_drained(self, timeout: float = 300.0) -> None:
        """An overloaded step leaves a backlog; the next step starts once the queue is empty."""
        deadline = time.monotonic() + timeout
        while self.queued() and time.monotonic() < deadline:
            time.sleep(0.5)

    def last_order_id(self) -> int:
        """The highest order id so far: a pass counts the rows written after it."""
        return int(self.sql("SELECT coalesce(max(order_id), 0) FROM orders")[0][0])

    def order_count(self) -> int:
        return int(self.sql("SELECT count(*) FROM orders")[0][0])

    # -- phases

    def intake(self, script: Path, *, breakdown: bool = False) -> IntakeResult:
        """``breakdown``: then a second run, sampled, whose component shares the result carries."""
        port = self.stack.ports.host
        note(f"intake: warming up {self.options.warmup:.0f}s, then {self.options.duration:.0f}s at "
             f"{self.options.connections} connections")
        token = self.backend_token()
        run_wrk(port, self.options.warmup, self.options.connections, self.options.customers, self.host_pid,
                "warm-up", script, token)
        broker_before = cpu_seconds(self.broker_pid)
        result = run_wrk(port, self.options.duration, self.options.connections, self.options.customers,
                         self.host_pid, "local host", script, token)
        result.broker_cpu_us = (cpu_seconds(self.broker_pid) - broker_before) / max(1, result.accepted) * 1e6
        result.queued = self.queued()
        if breakdown:
            note("intake: once more, sampled for the CPU breakdown")
            sampled = run_wrk(port, self.options.duration, self.options.connections, self.options.customers,
                              self.host_pid, "local host", script, token, sample=True)
            carry_breakdown(result, sampled)
        return result

    def intake_open_loop(self, rate: float) -> IntakeOpenLoop:
        """Orders sent at ``rate`` by the open-loop sender, timed from when each was due, to the HTTP-only host."""
        note(f"intake: open loop at {rate:,.0f} orders/s for {self.options.warmup:.0f}s (warm-up) + "
             f"{self.options.duration:.0f}s ...")
        cpu_before = cpu_seconds(self.host_pid)
        sent = self.send(rate, self.options.duration, self.options.warmup)
        cpu = cpu_seconds(self.host_pid) - cpu_before
        measured = [order for order in sent["orders"] if not order["warmup"]]
        waits = [(order["accepted"] - order["due"]) * 1000 for order in measured]
        return IntakeOpenLoop(offered_rate=rate, achieved_rate=len(measured) / sent["seconds"],
                              p50_ms=percentile(waits, 0.5), p99_ms=percentile(waits, 0.99),
                              max_ms=max(waits, default=float("nan")), accepted=len(measured),
                              failures=len(sent["failures"]), host_cpu_us=cpu / max(1, len(sent["orders"])) * 1e6)

    def backend_token(self) -> str:
        """The development backend's token: it names the customer in the body, as the load does."""
        from local_identity.client import development_token

        return development_token(self.stack.identity_url)

    def token_validation(self, count: int = 10_000) -> tuple[float, float]:
        """CPU µs per token validation, in a process of its own: the validator the intake runs, the keys
        fetched once from the stack's identity provider; a token seen for the first time (signature checked:
        the cache is off) and one presented again (remembered, the common case: a client reuses its token
        for an hour)."""
        program = (
            "import asyncio, sys, time\n"
            "from service_platform.access_tokens import AccessTokenValidator\n"
            "from function_app.callers import caller_for\n"
            "header = 'Bearer ' + sys.argv[2]\n"
            "async def run(v, n):\n"
            "    for _ in range(n):\n"
            "        caller_for(await v.validate_header(header))\n"
            "for size in (0, 10_000):\n"
            "    v = AccessTokenValidator(issuer=sys.argv[1], audience='api://orders', cache_size=size)\n"
            "    asyncio.run(run(v, 200))\n"
            "    started = time.process_time()\n"
            "    asyncio.run(run(v, int(sys.argv[3])))\n"
            "    print((time.process_time() - started) / int(sys.argv[3]) * 1e6)\n")
        result = subprocess.run([sys.executable, "-c", program, self.stack.identity_url, self.backend_token(),
                                 str(count)], cwd=ROOT, capture_output=True, text=True, check=True)
        first, again = (float(line) for line in result.stdout.split())
        return first, again

    def preload(self, count: int) -> None:
        """Queue ``count`` orders through intake while nothing processes them."""
        note(f"processing: queueing {count} orders through intake (processing off) ...")
        sent = self.send(rate=1e9, seconds=count / 1e9, warmup=0)
        if len(sent["orders"]) != count:
            raise RuntimeError(f"only {len(sent['orders'])} of {count} orders were accepted: {sent['failures'][:3]}")

    def send(self, rate: float, seconds: float, warmup: float, customers: int | None = None, *,
             arrivals: str | None = None, pick: str | None = None, follow_seconds: float | None = None
             ) -> dict[str, Any]:
        """The open-loop sender in a process of its own (``send_at_rate``; arrivals and pick default to the
        options'); ``follow_seconds``: it follows each accepted order on its socket too."""
        customers = customers or self.options.customers
        follow = [] if follow_seconds is None else ["--follow-seconds", repr(follow_seconds)]
        sender = subprocess.run(
            [sys.executable, "-m", "bench.pipeline_bench", "--send-at-rate", repr(rate), "--port", str(self.stack.ports.host),
             "--rate-duration", repr(seconds), "--warmup", repr(warmup), "--customers", str(customers),
             "--arrivals", arrivals or self.options.arrivals, "--pick", pick or self.options.pick,
             "--token", self.backend_token(), *follow],
            cwd=ROOT, capture_output=True, text=True, check=False)
        if sender.returncode != 0:
            raise RuntimeError(f"the sender failed:\n{sender.stderr}")
        return json.loads(sender.stdout.strip().splitlines()[-1])

    def processing(self, *, sample: bool = False) -> ProcessingResult:
        """``sample``: py-spy samples the host (see ``run_wrk``: not the run whose rate is reported)."""
        expected = self.queued()
        already = self.order_count()
        last_id = self.last_order_id()
        note(f"processing: {expected} queued orders, one host running {', '.join(PROCESSING_FUNCTIONS)} ...")
        self.restart_host(PROCESSING_FUNCTIONS)
        sampler = Sampler(self.host_pid)
        if sample:
            sampler.start()
        cpu_before = cpu_seconds(self.host_pid)
        broker_before = cpu_seconds(self.broker_pid)
        started = time.monotonic()
        done = 0
        last_report = 0.0
        timeout = max(60.0, expected / 100)
        while done < expected:
            time.sleep(0.25)
            done = self.order_count() - already
            now = time.monotonic()
            if now - last_report >= 2:
                last_report = now
                note(f"processing: {done}/{expected} orders written")
            if now - started > timeout:
                note(f"processing: gave up after {timeout:.0f}s with {done}/{expected} orders written")
                break
        wall = time.monotonic() - started
        cpu = cpu_seconds(self.host_pid) - cpu_before
        broker_cpu = cpu_seconds(self.broker_pid) - broker_before
        components = sampler.stop()
        first, last, completed = self.sql(
            "SELECT min(updated_at), max(updated_at), sum(status = 'Completed') FROM orders WHERE order_id > :after",
            after=last_id)[0]
        span = (_utc(last) - _utc(first)).total_seconds()
        return ProcessingResult(orders=done, orders_per_s=(done - 1) / span if span > 0 else float("nan"),
                                wall_seconds=wall, host_cpu_us=cpu / max(1, done) * 1e6, completed=int(completed),
                                broker_cpu_us=broker_cpu / max(1, done) * 1e6, components=components,
                                sampling_error=sampler.error)

    def bare_processing(self, *, sample: bool = False) -> ProcessingResult:
        """The queued orders consumed by ``bench.bare_consumer`` (SDK session receivers, one SQLite insert,
        complete) with the host's session settings: the processing row's baseline."""
        import resource

        from local_functions_host.host_config import load_host_config

        # The session settings as the local host reads them: host.json with this run's overrides.
        overrides = {f"{SERVICE_BUS_SETTING}{key}": value for key, value in self.options.service_bus}
        service_bus = load_host_config(ROOT, overrides).service_bus
        sessions = service_bus.max_concurrent_sessions
        expected = self.queued()
        note(f"processing baseline: {expected} queued orders, a bare consumer with {sessions} sessions ...")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        broker_before = cpu_seconds(self.broker_pid)
        started = time.monotonic()
        consumer = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_consumer", "--connection-string", self.stack.connection_string,
             "--database", str(self.stack.data_dir / "bare-consumer.db"), "--expected", str(expected),
             "--sessions", str(sessions), "--idle-seconds", str(service_bus.session_idle_timeout)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = Sampler(consumer.pid)
        if sample:
            sampler.start()
        try:
            stdout, stderr = consumer.communicate(timeout=max(120.0, expected / 20))
        finally:
            components = sampler.stop()
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait()
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if consumer.returncode != 0:
            raise RuntimeError(f"the bare consumer failed:\n{stderr}")
        consumed = json.loads(stdout.strip().splitlines()[-1])
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        done = consumed["messages"]
        return ProcessingResult(orders=done, orders_per_s=(done - 1) / consumed["seconds"] if consumed["seconds"] else
                                float("nan"), wall_seconds=wall, host_cpu_us=cpu / max(1, done) * 1e6, completed=done,
                                broker_cpu_us=(cpu_seconds(self.broker_pid) - broker_before) / max(1, done) * 1e6,
                                components=components, sampling_error=sampler.error)

    def latency(self, rate: float, customers: int | None = None, *, sample: bool = False) -> LatencyResult:
        """``sample``: py-spy samples the host during the step, for the CPU breakdown."""
        customers = customers or self.options.customers
        sampler = Sampler(self.host_pid)
        if sample:
            sampler.start()
        last_id = self.last_order_id()
        note(f"latency: {rate:.0f} orders/s for {self.options.warmup:.0f}s (warm-up) + "
             f"{self.options.rate_duration:.0f}s over {customers} customers ...")
        cpu_before = cpu_seconds(self.host_pid)
        broker_before = cpu_seconds(self.broker_pid)
        started = time.monotonic()
        sent = self.send(rate, self.options.rate_duration, self.options.warmup, customers)
        orders = {order["correlationId"]: order for order in sent["orders"]}
        deadline = time.monotonic() + 60
        while self.new_orders(last_id) < len(orders) and time.monotonic() < deadline:
            time.sleep(0.1)
        host_cpu = cpu_seconds(self.host_pid) - cpu_before
        broker_cpu = cpu_seconds(self.broker_pid) - broker_before
        components = sampler.stop()
        elapsed = time.monotonic() - started
        rows = self.sql("SELECT correlation_id, status, updated_at FROM orders WHERE order_id > :after", after=last_id)
        measured = {cid: order for cid, order in orders.items() if not order["warmup"]}
        latencies = []
        completed = 0
        for correlation_id, status, updated_at in rows:
            order = measured.get(correlation_id)
            if order is None:
                continue
            completed += status == "Completed"
            latencies.append((_utc(updated_at).timestamp() - order["due"]) * 1000)
        intake = [(order["accepted"] - order["due"]) * 1000 for order in measured.values()]
        return LatencyResult(
            offered_rate=rate, sent=sent["sent"], achieved_rate=len(measured) / sent["seconds"],
            intake_p50_ms=percentile(intake, 0.5), intake_p99_ms=percentile(intake, 0.99),
            p50_ms=percentile(latencies, 0.5), p99_ms=percentile(latencies, 0.99),
            max_ms=max(latencies, default=float("nan")), completed=completed,
            failures=len(sent["failures"]) + len(measured) - len(latencies),
            host_cpu_percent=host_cpu / elapsed * 100,
            host_cpu_us=host_cpu / max(1, len(orders)) * 1e6, broker_cpu_us=broker_cpu / max(1, len(orders)) * 1e6,
            components=components, sampling_error=sampler.error,
        )

    def capacity(self, customers: int, start_rate: float) -> CapacityResult:
        """Raise the offered rate by half each step while it is sustained, try once between the last rate
        sustained and the first one not, then offer half the highest sustained rate."""
        steps: list[LatencyResult] = []

        def offer(rate: float) -> LatencyResult:
            steps.append(self.latency(rate, customers))
            self.wait_until_drained()
            return steps[-1]

        best: LatencyResult | None = None
        rate = start_rate
        while (step := offer(rate)).sustained:
            best = step
            rate *= 1.5
        if best is not None and (step := offer((best.offered_rate + rate) / 2)).sustained:
            best = step
        half = self.latency(best.offered_rate / 2, customers) if best is not None else None
        if half is not None:
            note("capacity: half of it once more, sampled for the CPU breakdown")
            carry_breakdown(half, self.latency(half.offered_rate, customers, sample=True))
        return CapacityResult(customers=customers, steps=steps, best=best, half=half)

    def journey(self, rate: float, customers: int) -> JourneyResult:
        """Orders at ``rate`` (Poisson arrivals, customers picked at random), each followed on its own socket
        until its terminal status arrives; the rows' commit times from the same pass are the reference."""
        last_id = self.last_order_id()
        note(f"journey: {rate:.0f} orders/s for {self.options.warmup:.0f}s (warm-up) + "
             f"{self.options.rate_duration:.0f}s over {customers:,} random customers, each followed on its socket ...")
        pids = {"host": self.host_pid, "broker": self.broker_pid, "websocket": self.websocket_pid}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        sent = self.send(rate, self.options.rate_duration, self.options.warmup, customers, arrivals="poisson",
                         pick="random", follow_seconds=30.0)
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        commits = {correlation_id: _utc(updated_at).timestamp() for correlation_id, updated_at in self.sql(
            "SELECT correlation_id, updated_at FROM orders WHERE order_id > :after", after=last_id)}
        result = summarize(rate, sent, commits)
        orders = max(1, len(sent["orders"]))
        result.host_cpu_us, result.broker_cpu_us, result.websocket_cpu_us = (
            cpu[name] / orders * 1e6 for name in ("host", "broker", "websocket"))
        self.wait_until_drained()
        return result

    def new_orders(self, after_id: int) -> int:
        return int(self.sql("SELECT count(*) FROM orders WHERE order_id > :after", after=after_id)[0][0])


@contextlib.contextmanager
def running(bench: Bench) -> Iterator[Bench]:
    try:
        bench.start()
        yield bench
    finally:
        bench.stop()


def carry_breakdown(result: Any, sampled: Any) -> None:
    """Give ``result`` the CPU breakdown of ``sampled``, the same load's extra pass with py-spy attached."""
    result.components, result.sampling_error = sampled.components, sampled.sampling_error


def _utc(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


# ------------------------------------------------------------------------------------------ report


def render(report: Report, options: argparse.Namespace, started_load: str) -> str:
    overrides = ", ".join(f"{name}={value}" for name, value in options.service_bus) or "none"
    lines = [f"machine: {machine()}; load average at start {started_load}, at end {load_average()}",
             f"host.json serviceBus overrides: {overrides}",
             f"command: {' '.join(['.venv/bin/python', '-m', 'bench.pipeline_bench', *sys.argv[1:]])}", ""]

    def table(header: list[str], rows: list[list[str]]) -> None:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in rows)
        lines.append("")

    if report.capacity:
        lines.append(f"Capacity: one host with all functions, {options.pick} customers, {options.arrivals} arrivals, "
                     f"{options.rate_duration:.0f}s per step; the highest offered rate with every order processed and "
                     f"accepted→Completed p99 ≤ {CAPACITY_P99_MS:.0f} ms (from when each order was due), then half "
                     "of it:")
        rows = []
        for c in report.capacity:
            for label, r in (("highest sustained", c.best), ("half of it", c.half)):
                if r is None:
                    rows.append([f"{c.customers:,}", label, "none", "", "", "", "", "", "", ""])
                    continue
                rows.append([f"{c.customers:,}", label, f"{r.offered_rate:.0f}/s", f"{r.p50_ms:.0f}", f"{r.p99_ms:.0f}",
                             f"{r.completed}/{r.sent}", f"{r.host_cpu_percent:.0f}%", f"{r.host_cpu_us:.0f}",
                             f"{r.broker_cpu_us:.0f}",
                             _mark(r.p99_ms <= TARGETS["latency_p99_ms"]) if label == "half of it" else ""])
            tried = ", ".join(f"{r.offered_rate:.0f}/s p99 {r.p99_ms:.0f} ms"
                              + ("" if r.sustained else " (not sustained)") for r in c.steps)
            rows.append([f"{c.customers:,}", "steps", tried, "", "", "", "", "", "", ""])
        table(["customers", "", "offered", "p50 ms", "p99 ms", "processed", "host CPU", "host CPU µs/order",
               "broker CPU µs/order", "target p99 ≤250 ms at half"], rows)
        _breakdown_table(lines, table, [(f"{c.customers:,} customers at half", c.half.components, c.half.host_cpu_us,
                                         c.half.sampling_error) for c in report.capacity if c.half is not None])
    if report.intake:
        lines.append(f"Intake, POST /api/orders, {options.connections} connections, {options.duration:.0f}s (wrk):")
        rows = []
        baseline = next((r for r in report.intake if r.name == "baseline"), None)
        for r in report.intake:
            ratio = r.requests_per_s / baseline.requests_per_s if baseline else float("nan")
            ok = "" if r is baseline or baseline is None else _mark(ratio >= TARGETS["intake_ratio"])
            rows.append([r.name, f"{r.requests_per_s:,.0f}", f"{ratio:.3f}×", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
                         f"{r.max_ms:.0f}", f"{r.other + r.errors}", f"{r.server_cpu_us:.0f}",
                         "" if r.broker_cpu_us is None else f"{r.broker_cpu_us:.0f}", f"{r.load_cpu_percent:.0f}%",
                         "" if r.queued is None else f"{r.queued:,}", ok])
        table(["server", "202/s", "ratio", "p50 ms", "p99 ms", "max ms", "non-202", "server CPU µs/req",
               "broker CPU µs/req", "wrk CPU", "queued after",
               f"target ≥{TARGETS['intake_ratio']:.2f}× bare uvicorn"], rows)
        _breakdown_table(lines, table, [(r.name, r.components, r.server_cpu_us, r.sampling_error)
                                        for r in report.intake])
    if report.intake_open_loop is not None:
        o = report.intake_open_loop
        lines.append("Intake, open loop at half the local host's rate above (POST→202 from when each order was due; "
                     "random customers):")
        table(["offered", "achieved", "p50 ms", "p99 ms", "max ms", "accepted", "failed", "host CPU µs/order",
               f"target p99 ≤{TARGETS['intake_open_loop_p99_ms']:.0f} ms"],
              [[f"{o.offered_rate:,.0f}/s", f"{o.achieved_rate:,.0f}/s", f"{o.p50_ms:.1f}", f"{o.p99_ms:.1f}",
                f"{o.max_ms:.0f}", f"{o.accepted:,}", f"{o.failures:,}", f"{o.host_cpu_us:.0f}",
                _mark(o.p99_ms <= TARGETS["intake_open_loop_p99_ms"] and o.failures == 0)]])
    if report.validation_cpu_us is not None and report.intake:
        host = report.intake[-1]
        first, again = report.validation_cpu_us
        rows = [["intake with token validation (the local host row above; one token, remembered)",
                 f"{host.server_cpu_us:.0f}", "100%", ""],
                ["intake without token validation (that minus a remembered token's check)",
                 f"{host.server_cpu_us - again:.0f}", f"{1 - again / host.server_cpu_us:.1%}", ""]]
        for name, cost in (("a remembered token (signature checked before)", again),
                           ("a token seen for the first time (RS256 signature check)", first)):
            share = cost / host.server_cpu_us
            rows.append([f"validation alone: {name}", f"{cost:.0f}", f"{share:.1%}", _mark(share <= 0.10)])
        table(["intake CPU per order", "µs", "share of intake CPU", "target ≤10%"], rows)
    if report.invocation_us:
        floor = report.invocation_us[0][1]
        rows = [[name, f"{cost:.1f}", f"±{spread / 2:.1f}", "1.00×" if index == 0 else f"{cost / floor:,.0f}×"]
                for index, (name, cost, spread) in enumerate(report.invocation_us)]
        lines.append("Invocation cost per message, no-op functions, CPU of one process (bench/invocation_cost.py); "
                     "the ratio is to the first row, measured in the same run:")
        table(["path", "µs per invocation", "spread", "ratio"], rows)
    if report.processing:
        p, bare = report.processing, report.bare_processing
        rows = []
        if bare is not None:
            rows.append(["bare consumer: SDK session receivers, one SQLite insert, complete (baseline)",
                         f"{bare.orders:,}", f"{bare.orders_per_s:,.0f}", "1.00×", f"{bare.host_cpu_us:.0f}", "1.00×",
                         f"{bare.broker_cpu_us:.0f}", "", ""])
        rate_ratio = f"{p.orders_per_s / bare.orders_per_s:.2f}×" if bare else ""
        cpu_ratio = f"{p.host_cpu_us / bare.host_cpu_us:.2f}×" if bare else ""
        rows.append(["queued orders → SQL, one host", f"{p.orders:,}", f"{p.orders_per_s:,.0f}", rate_ratio,
                     f"{p.host_cpu_us:.0f}", cpu_ratio, f"{p.broker_cpu_us:.0f}", f"{p.completed:,}",
                     _mark(p.orders_per_s >= TARGETS["processing_ratio"] * bare.orders_per_s) if bare else ""])
        lines.append(f"Processing of queued orders over {options.customers:,} customers, each row next to its baseline "
                     f"in this run:")
        table(["processing (SQLite)", "orders", "orders/s", "ratio", "CPU µs/order", "ratio", "broker CPU µs/order",
               "Completed", f"target ≥{TARGETS['processing_ratio']:.2f}× the bare consumer"], rows)
        _breakdown_table(lines, table, [(name, r.components, r.host_cpu_us, r.sampling_error)
                                        for name, r in (("one host", p), ("bare consumer", bare)) if r is not None])
    if report.latency:
        rows = []
        for r in report.latency:
            ok = (f"p50 {_mark(r.p50_ms <= TARGETS['latency_p50_ms'])}, "
                  f"p99 {_mark(r.p99_ms <= TARGETS['latency_p99_ms'])}")
            rows.append([f"{r.offered_rate:.0f}/s", f"{r.achieved_rate:.0f}/s", f"{r.intake_p50_ms:.1f}",
                         f"{r.intake_p99_ms:.1f}", f"{r.p50_ms:.0f}", f"{r.p99_ms:.0f}", f"{r.max_ms:.0f}",
                         f"{r.completed}/{r.sent}", f"{r.host_cpu_percent:.0f}%", ok])
        lines.append(f"Accepted→Completed (from when the order was due to order row written), one host with all "
                     f"functions, {options.customers} customers picked {options.pick}, {options.arrivals} arrivals, "
                     f"{options.rate_duration:.0f}s per rate:")
        table(["offered", "achieved", "POST→202 p50 ms", "p99 ms", "POST→Completed p50 ms", "p99 ms", "max ms",
               "Completed", "host CPU", "target p50 ≤50 ms, p99 ≤250 ms (at 200/s)"], rows)
    if report.journey:
        rows = []
        for r in report.journey:
            rows.append([f"{r.offered_rate:.0f}/s", f"{r.achieved_rate:.0f}/s", f"{r.accepted_p50_ms:.0f} / "
                         f"{r.accepted_p99_ms:.0f}", f"{r.committed_p50_ms:.0f} / {r.committed_p99_ms:.0f}",
                         f"{r.seen_p50_ms:.0f} / {r.seen_p99_ms:.0f}", f"{r.seen_max_ms:.0f}",
                         f"{r.after_commit_p50_ms:.0f} / {r.after_commit_p99_ms:.0f}",
                         f"{r.delivered:,}/{r.measured:,}", f"{r.pushed:,}", f"{r.host_cpu_us:.0f}",
                         f"{r.broker_cpu_us:.0f}", f"{r.websocket_cpu_us:.0f}", _mark(r.nothing_lost)])
        lines.append(f"Journey: POST → 202 → terminal status on the customer's socket, every order followed with its "
                     f"notifyUrl on one WebSocket service instance; one host with all functions; "
                     f"{options.journey_customers:,} customers picked at random, Poisson arrivals, "
                     f"{options.rate_duration:.0f}s per rate; times from when each order was due (p50 / p99 ms); "
                     f"the commit column is the same pass's reference:")
        table(["offered", "achieved", "due→202", "due→row committed", "due→status on socket", "max ms",
               "socket after commit (pushed)", "terminal status delivered", "pushed", "host CPU µs/order",
               "broker CPU µs/order", "WebSocket CPU µs/order", "every order delivered"], rows)
        problems = sorted({error for r in report.journey for error in r.errors})
        if problems:
            lines.extend(["Journey problems seen: " + "; ".join(problems[:6]), ""])
    if report.tracing:
        off = report.tracing[0]
        rows = []
        for r in report.tracing:
            intake_ratio, processing_ratio = r.intake_cpu_us / off.intake_cpu_us, r.processing_cpu_us / off.processing_cpu_us
            rows.append([r.name, f"{r.intake_cpu_us:.0f}", f"{intake_ratio:.2f}×", f"{r.intake_rps:,.0f}",
                         f"{r.processing_cpu_us:.0f}", f"{processing_ratio:.2f}×", f"{r.processing_rps:,.0f}",
                         "" if r is off else ("—" if r.spans_per_order != r.spans_per_order else f"{r.spans_per_order:.1f}"),
                         _mark(intake_ratio <= 1.15 and processing_ratio <= 1.15) if "100%" in r.name else ""])
        lines.append(f"Tracing cost: one stack per row, in this run ({options.tracing_orders:,} orders queued then "
                     f"processed by one host, then intake at {options.connections} connections for "
                     f"{options.duration:.0f}s); the ratios are to the first row:")
        table(["", "intake CPU µs/order", "ratio", "202/s", "processing CPU µs/order", "ratio", "orders/s",
               "spans exported per traced order", "target ≤1.15× CPU (100% sampled)"], rows)
    return "\n".join(lines)


def _breakdown_table(lines: list[str], table: Callable[[list[str], list[list[str]]], None],
                     columns: list[tuple[str, dict[str, float], float, str | None]]) -> None:
    """CPU µs per order by component, one column per process: (name, shares, CPU µs per order, sampling error).

    A component's figure is its share of the process's GIL samples times the process's CPU per order."""
    for name, _, _, error in columns:
        if error:
            lines.append(f"No CPU breakdown for {name}: {error}.")
    sampled = [(name, shares, cpu) for name, shares, cpu, _ in columns if shares]
    if not sampled:
        return
    rows = []
    for component in (rule.component for rule in COMPONENTS):
        if any(shares.get(component) for _, shares, _ in sampled):
            rows.append([component, *(f"{shares.get(component, 0) * cpu:,.0f} ({shares.get(component, 0):.0%})"
                                      for _, shares, cpu in sampled)])
    rows.append(["all (the process's CPU per order)", *(f"{cpu:,.0f}" for _, _, cpu in sampled)])
    lines.append("Where each process's CPU per order goes (bench/cpu_breakdown.py: py-spy samples of the thread "
                 "holding the GIL, share × CPU per order):")
    table(["component", *(f"{name}: CPU µs/order (share)" for name, _, _ in sampled)], rows)


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _mark(met: bool) -> str:
    return "met" if met else "MISSED"


# ------------------------------------------------------------------------------------------ driver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases, for a smoke run")
    parser.add_argument("--duration", type=float, help="seconds of measured intake load (default 10, quick 3)")
    parser.add_argument("--warmup", type=float, help="seconds of unmeasured load before each measurement (default 2, quick 1)")
    parser.add_argument("--connections", type=int, default=64, help="intake connections (default 64)")
    parser.add_argument("--customers", type=int, default=50, help="distinct customers (sessions) (default 50)")
    parser.add_argument("--arrivals", choices=("even", "poisson"), default="even",
                        help="latency phase: orders evenly spaced, or Poisson arrivals at the same mean rate")
    parser.add_argument("--pick", choices=("round-robin", "random", "skewed"), default="round-robin",
                        help="latency phase: which customer places each order (skewed: weight 1/rank)")
    parser.add_argument("--rates", default="100,200", help="offered orders/s for the latency phase (default 100,200)")
    parser.add_argument("--rate-duration", type=float, help="seconds per offered rate (default 20, quick 5)")
    parser.add_argument("--service-bus", action="append", default=[], type=_setting, metavar="NAME=VALUE",
                        help="override a host.json extensions.serviceBus setting for the host, e.g. "
                        "maxConcurrentSessions=64 (repeatable; default: host.json as it is)")
    parser.add_argument("--only", default="intake,invocation,processing,latency,journey,tracing",
                        help="phases to run, comma-separated (default: all six; capacity runs only when named)")
    parser.add_argument("--capacity-customers", default="50,1000,10000",
                        help="capacity phase: customer counts, each searched on its own (default 50,1000,10000)")
    parser.add_argument("--capacity-start", type=float, default=20.0,
                        help="capacity phase: first offered rate, orders/s (default 20)")
    parser.add_argument("--tracing-orders", type=int,
                        help="orders queued and processed per stack in the tracing phase (default 3000, quick 1000)")
    parser.add_argument("--processing-orders", type=int,
                        help="orders queued for the processing phase (default 10000, quick 3000)")
    parser.add_argument("--journey-rates", default="25,50",
                        help="journey phase: offered orders/s, each order followed on its socket (default 25,50)")
    parser.add_argument("--journey-customers", type=int, default=1000,
                        help="journey phase: customers picked at random (default 1000)")
    parser.add_argument("--keep-data", action="store_true", help="keep the run's folder (logs, SQLite, broker store)")
    # child roles
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-otlp-sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--send-at-rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--follow-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--invocation-costs", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()

    if options.invocation_costs:
        from bench.invocation_cost import measure

        print(json.dumps([(c.name, c.microseconds, c.spread) for c in measure(options.invocation_costs)]))
        return 0

    if options.serve_otlp_sink:
        serve_otlp_sink()
        return 0
    if options.serve_baseline:
        serve_baseline()
        return 0
    if options.send_at_rate:
        asyncio.run(send_at_rate(options.port, options.send_at_rate, options.rate_duration, options.warmup,
                                 options.customers, connections=32, token=options.token, arrivals=options.arrivals,
                                 pick=options.pick, follow_seconds=options.follow_seconds))
        return 0

    options.duration = options.duration or (3.0 if options.quick else 10.0)
    options.warmup = options.warmup if options.warmup is not None else (1.0 if options.quick else 2.0)
    options.processing_orders = options.processing_orders or (3000 if options.quick else 10000)
    options.tracing_orders = options.tracing_orders or (1000 if options.quick else 3000)
    options.rate_duration = options.rate_duration or (5.0 if options.quick else 20.0)
    phases = {phase.strip() for phase in options.only.split(",") if phase.strip()}
    if phases & {"intake", "tracing"} and shutil.which("wrk") is None:
        print("wrk is not installed; it generates the intake load. Install it with `apt-get install -y wrk`.",
              file=sys.stderr)
        return 2

    # SIGTERM ends the run like Ctrl-C, so the stack's processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started_load = load_average()
    note(f"{machine()}; load average {started_load}")
    report = Report()
    data_dir = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    try:
        script = data_dir / "orders.lua"
        script.write_text(WRK_SCRIPT)
        if "intake" in phases:
            report.intake.append(measure_baseline(options, script))
            with running(Bench(options, data_dir / "intake")) as bench:
                report.intake.append(bench.intake(script, breakdown=True))
                report.intake_open_loop = bench.intake_open_loop(report.intake[-1].requests_per_s / 2)
                note("intake: CPU of token validation alone ...")
                report.validation_cpu_us = bench.token_validation()
        if "invocation" in phases:
            report.invocation_us = measure_invocation_cost(1000 if options.quick else 3000)
        if phases & {"processing", "latency"}:
            # A stack of its own: the intake phase leaves far more orders queued than this phase needs.
            with running(Bench(options, data_dir / "processing")) as bench:
                if "processing" in phases:
                    bench.preload(options.processing_orders)
                    report.bare_processing = bench.bare_processing()
                    bench.preload(options.processing_orders)
                    report.processing = bench.processing()
                    # The CPU breakdown from a second pass of each, sampled: py-spy takes a share of the
                    # machine's two cores, so the rates above come from the passes it did not watch.
                    sampled_orders = min(options.processing_orders, 2000)
                    bench.restart_host(HTTP_FUNCTIONS)  # intake only, so the queued orders wait for the consumer
                    bench.preload(sampled_orders)
                    carry_breakdown(report.bare_processing, bench.bare_processing(sample=True))
                    bench.preload(sampled_orders)
                    carry_breakdown(report.processing, bench.processing(sample=True))
                if "latency" in phases:
                    bench.restart_host(None)
                    for rate in (float(r) for r in options.rates.split(",") if r.strip()):
                        report.latency.append(bench.latency(rate))
        if "capacity" in phases:
            for customers in (int(n) for n in options.capacity_customers.split(",") if n.strip()):
                # A stack of its own per customer count: no session or order of another count carries over.
                with running(Bench(options, data_dir / f"capacity-{customers}")) as bench:
                    bench.restart_host(None)
                    report.capacity.append(bench.capacity(customers, options.capacity_start))
        if "journey" in phases:
            # A stack of its own with one WebSocket service instance; one host runs every function.
            with running(Bench(options, data_dir / "journey", websockets=1)) as bench:
                bench.restart_host(None)
                for rate in (float(r) for r in options.journey_rates.split(",") if r.strip()):
                    report.journey.append(bench.journey(rate, options.journey_customers))
        if "tracing" in phases:
            report.tracing = measure_tracing(options, script, data_dir / "tracing")
    except KeyboardInterrupt:
        note("interrupted; the stack has been stopped")
        return 130
    finally:
        if options.keep_data:
            note(f"run folder kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(render(report, options, started_load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
