"""The short run of the fault-injection suite (``bench/fault_injection.py``): the whole system on PostgreSQL
under open-loop load while the Functions host, the broker, each WebSocket instance, Redis and the
PostgreSQL server are killed with SIGKILL in turn and the host is restarted gracefully; every invariant
must hold. (The other end-to-end tests run on SQLite.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[3]


def test_the_short_fault_injection_run_holds_every_invariant() -> None:
    run = subprocess.run([sys.executable, "-m", "bench.fault_injection", "--store", "postgres", "--seconds", "50",
                          "--rate", "20", "--interval", "4"], cwd=ROOT, capture_output=True, text=True, timeout=420)
    report = run.stdout
    lines = [line for line in report.splitlines() if line.startswith(("HELD", "BROKEN"))]
    assert run.returncode == 0 and len(lines) == 7 and all(line.startswith("HELD") for line in lines), (
        f"{report}\n{run.stderr[-4000:]}")
    faults = report.split("faults: ", 1)[1].splitlines()[0]
    assert {"host", "broker", "ws-0", "ws-1", "redis", "postgres", "host-graceful"} <= set(faults.split(", ")), faults
