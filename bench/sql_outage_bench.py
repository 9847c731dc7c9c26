"""How long an SQL outage the processing rides out before it dead-letters an order (not a test): prints a table.

The whole system runs as real processes on a private PostgreSQL server (stopped for good at the start of
the run) with 64 customers' orders in flight, and shortened retry budgets (``PROCESSING_RETRY_BUDGET_SECONDS``)
under a ``functionTimeout`` scaled alike, the pauses in the production settings' proportions. Measured per budget: the time from the outage's start to the
first message in the dead-letter queue. The ride-out is then ``MaxDeliveryCount`` deliveries of one budget
each, so the production figure (240 s budget, MaxDeliveryCount 10) follows from the measured ratio.

    .venv/bin/python -m bench.sql_outage_bench            # budgets 2 s and 4 s, about two minutes
    .venv/bin/python -m bench.sql_outage_bench --budgets 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

from bench.measure import aligned_table, load_average, machine, note
from local_servers.orders_api import BackendAndOperatorAuth, order_body
from local_servers.postgres_cluster import running_postgres
from local_stack.stack import LocalStack, StackPorts

CUSTOMERS = 64
MAX_DELIVERY_COUNT = 10  # the orders queue's, locally (localbus/default_config.json) and in Azure
PRODUCTION_BUDGET = 240.0


def dead_lettered(stack: LocalStack) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports.broker_http}/queues", timeout=5) as answer:
        return int(json.load(answer)["orders"]["deadLettered"])


def first_dead_letter_after(budget: float, data_dir: Path) -> tuple[float, int]:
    """(seconds from the outage's start to the first dead-lettered order, orders accepted)."""
    with running_postgres() as cluster:
        url = cluster.create_database()
        timeout = max(3, int(budget * 2))
        environ = {
            "SQL_URL": url,
            "AzureFunctionsJobHost__functionTimeout": f"00:{timeout // 60:02d}:{timeout % 60:02d}",
            "PROCESSING_RETRY_BUDGET_SECONDS": str(budget),
            # The production settings' proportions (2 s and 30 s of 240 s), so the ratio carries over.
            "PROCESSING_RETRY_BASE_SECONDS": str(budget * 2 / PRODUCTION_BUDGET),
            "PROCESSING_RETRY_MAX_SECONDS": str(budget * 30 / PRODUCTION_BUDGET),
        }
        stack = LocalStack(data_dir, StackPorts.free(websocket_instances=0), environ=environ, telemetry=False)
        stack.start()
        try:
            with httpx.Client(base_url=stack.api_url, timeout=30,
                              auth=BackendAndOperatorAuth(stack.identity_url)) as api:
                cluster.stop()
                started = time.monotonic()
                for n in range(CUSTOMERS):
                    response = api.post("/orders", json=order_body(f"c-outage-{n}", ("SKU-3", 1)))
                    response.raise_for_status()
                deadline = started + MAX_DELIVERY_COUNT * budget * 3 + 60
                last_note = started
                while dead_lettered(stack) == 0:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"nothing dead-lettered after {time.monotonic() - started:.0f}s")
                    if time.monotonic() - last_note > 10:
                        note(f"budget {budget:g}s: {time.monotonic() - started:.0f}s into the outage, nothing "
                             "dead-lettered yet")
                        last_note = time.monotonic()
                    time.sleep(0.2)
                return time.monotonic() - started, CUSTOMERS
        finally:
            stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="2,4", help="retry budgets in seconds, comma-separated (default 2,4)")
    options = parser.parse_args()
    budgets = [float(b) for b in options.budgets.split(",") if b.strip()]
    started_load = load_average()
    rows = []
    ratios = []
    for budget in budgets:
        note(f"budget {budget:g}s: starting the stack on a private PostgreSQL server ...")
        with tempfile.TemporaryDirectory(prefix="sql-outage-bench-") as data_dir:
            seconds, orders = first_dead_letter_after(budget, Path(data_dir))
        predicted = MAX_DELIVERY_COUNT * budget
        ratios.append(seconds / predicted)
        rows.append((f"{budget:g} s", f"{orders}", f"{seconds:.1f} s", f"{predicted:.0f} s", f"{seconds / predicted:.2f}"))
    print(f"machine: {machine()}; load average at start {started_load}, at end {load_average()}")
    print(f"SQL down for good, {CUSTOMERS} customers' orders in flight, MaxDeliveryCount {MAX_DELIVERY_COUNT}:\n")
    print(aligned_table(("retry budget per delivery", "orders", "first dead-letter after",
                         "MaxDeliveryCount × budget", "ratio"), rows))
    ratio = min(ratios)
    print(f"\nWith the production budget ({PRODUCTION_BUDGET:.0f} s): the first order is dead-lettered after about "
          f"{ratio * MAX_DELIVERY_COUNT * PRODUCTION_BUDGET / 60:.0f} minutes of continuous outage "
          f"(the smallest measured ratio, {ratio:.2f}, × {MAX_DELIVERY_COUNT} × {PRODUCTION_BUDGET:.0f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
