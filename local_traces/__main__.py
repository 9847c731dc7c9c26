"""``python -m local_traces trace <correlationId>``: print an order's trace as a waterfall.

It reads the OTLP JSON lines the services write under ``LOCAL_TELEMETRY_DIR`` (``.local/telemetry`` when
``scripts/run`` runs the system): every span from the HTTP request to each WebSocket push, and those of a
replay's attempt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from service_platform.telemetry import LOCAL_DIR
from service_platform.trace_files import order_trace, phases, render, waterfall

DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".local" / "telemetry"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_traces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    trace = commands.add_parser("trace", help="print the spans of one order as a waterfall")
    trace.add_argument("correlation_id", metavar="correlationId")
    trace.add_argument("--dir", type=Path, default=Path(os.environ.get(LOCAL_DIR) or DEFAULT_DIR),
                       help=f"where the services write their spans (${LOCAL_DIR}, else %(default)s)")
    trace.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    trace.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait up to this long for the order's spans (they are written within a second or so)")
    options = parser.parse_args(argv)

    if not options.dir.is_dir():
        print(f"error: {options.dir} does not exist: start the system with scripts/run (it writes spans there), "
              f"or point --dir (or ${LOCAL_DIR}) at the folder the services write to.", file=sys.stderr)
        return 2
    deadline = time.monotonic() + options.wait
    while True:
        spans = order_trace(options.dir, options.correlation_id)
        if spans or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    if not spans:
        print(f"error: no span in {options.dir} names the order {options.correlation_id}. Check the id (the "
              "correlationId of the 202 answer); spans reach the files a second or so after each step, so try "
              "again with --wait 5; a sampler (OTEL_TRACES_SAMPLER) may have left the order out.", file=sys.stderr)
        return 1
    rows = waterfall(spans)
    where = phases(spans)
    if options.json:
        print(json.dumps({"correlationId": options.correlation_id, "phases": where,
                          "spans": [row.to_json() for row in rows]}, indent=2))
    else:
        traces = sorted({row.trace_id for row in rows}, key=[row.trace_id for row in rows].index)
        print(f"order {options.correlation_id}: {len(rows)} spans in {len(traces)} trace(s) ({', '.join(traces)})")
        print(render(rows))
        if where:
            names = {"intake": "in intake", "queue": "in the queue", "processing": "in processing",
                     "toSocket": "to the socket"}
            print("\n" + ", ".join(f"{names[key]} {value:.1f} ms" for key, value in where.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
