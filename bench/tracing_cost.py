"""What tracing costs per operation (not a test): prints a table.

Each variant runs in a process of its own (OpenTelemetry's providers are set once per process), on the
operations one order makes many times, in a span as during an invocation:

- an empty span as the host makes one per delivery (``process_span``);
- a SQL statement (SQLite in memory, ``SELECT 1``) through the SQLAlchemy instrumentation;
- a Redis ``SET`` through the Redis instrumentation, against a private redis-server;
- a log line with the project's JSON formatter (trace ids added by the logging instrumentation).

Variants: telemetry off (the baseline of each row's ratio), instrumented with nothing sampled
(``always_off``), every span sampled and exported over OTLP/HTTP to a local sink, and every span sampled and
written as OTLP JSON lines. CPU is the process's own (``time.process_time``: the exporting thread included),
after the exporter has been flushed.

    .venv/bin/python -m bench.tracing_cost            # about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.measure import ROOT, load_average, machine, note
from bench.pipeline_bench import start_otlp_sink
from local_servers.redis_server import running_redis

OPERATIONS = ("empty span", "SQL statement", "Redis command", "log line")


def measure(redis_url: str, count: int) -> dict[str, float]:
    """µs of CPU per operation in this process, as configured by the environment."""
    import io
    import logging

    import redis
    from sqlalchemy import create_engine, text

    from service_platform.logs import JsonFormatter
    from service_platform.message_tracing import process_span
    from service_platform.telemetry import configure_telemetry, instrument_sql_engine

    telemetry = configure_telemetry("bench")
    engine = create_engine("sqlite://")
    instrument_sql_engine(engine)
    client = redis.Redis.from_url(redis_url)
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter("bench"))
    log = logging.getLogger("bench.tracing")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    def spans(n: int) -> None:
        for _ in range(n):
            with process_span("orders", {}, message_id="m-1", correlation_id="c-1"):
                pass

    def statements(n: int) -> None:
        with process_span("orders", {}), engine.connect() as connection:
            for _ in range(n):
                connection.execute(text("SELECT 1"))

    def commands(n: int) -> None:
        with process_span("orders", {}):
            for _ in range(n):
                client.set("bench-key", "v")

    def lines(n: int) -> None:
        with process_span("orders", {}):
            for number in range(n):
                log.info("order %s processed", number, extra={"correlationId": "c-1"})

    def cost(operation) -> float:
        operation(count // 10)  # warm-up
        if telemetry is not None:
            telemetry.tracer_provider.force_flush()
        started = time.process_time()
        operation(count)
        if telemetry is not None:
            telemetry.tracer_provider.force_flush()
        return (time.process_time() - started) / count * 1e6

    return dict(zip(OPERATIONS, (cost(spans), cost(statements), cost(commands), cost(lines)), strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3000, help="operations per row and variant (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each cell is the median (default 3)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure(options.measure, options.count)))
        return 0

    started_load = load_average()
    note(f"{machine()}; load average {started_load}")
    sink, sink_port = start_otlp_sink()
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("OTEL_", "APPLICATIONINSIGHTS_")) and key != "LOCAL_TELEMETRY_DIR"}
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}
    results: dict[str, list[dict[str, float]]] = {}
    try:
        with running_redis() as redis_server, tempfile.TemporaryDirectory(prefix="tracing-cost-") as folder:
            variants = {
                "off": {},
                "instrumented, none sampled": {**otlp, "OTEL_TRACES_SAMPLER": "always_off"},
                "sampled, OTLP/HTTP": {**otlp, "OTEL_TRACES_SAMPLER": "always_on"},
                "sampled, JSON lines file": {"LOCAL_TELEMETRY_DIR": folder, "OTEL_TRACES_SAMPLER": "always_on"},
            }
            for round_number in range(options.rounds):
                for name, environ in variants.items():
                    note(f"round {round_number + 1}/{options.rounds}: {name}")
                    answer = subprocess.run(
                        [sys.executable, "-m", "bench.tracing_cost", "--measure", redis_server.url,
                         "--count", str(options.count)],
                        cwd=ROOT, env={**clean, **environ}, capture_output=True, text=True, check=True)
                    results.setdefault(name, []).append(json.loads(answer.stdout.strip().splitlines()[-1]))
    finally:
        sink.terminate()
        sink.wait(10)

    def median(name: str, operation: str) -> float:
        values = sorted(run[operation] for run in results[name])
        return values[len(values) // 2]

    print(f"machine: {machine()}; load average at start {started_load}, at end {load_average()}")
    print(f"command: .venv/bin/python -m bench.tracing_cost {' '.join(sys.argv[1:])}".rstrip())
    print(f"\nCPU µs per operation, median of {options.rounds} rounds of {options.count:,}; "
          "the ratio is to the row's first column, measured in the same run:\n")
    names = list(results)
    print("| operation | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for operation in OPERATIONS:
        base = median("off", operation)
        cells = [f"{base:.1f}"] + [f"{median(name, operation):.1f} ({median(name, operation) / base:.1f}×)"
                                   for name in names[1:]]
        print(f"| {operation} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
