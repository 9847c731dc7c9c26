"""``python -m local_traces trace``: the waterfall of an order, and errors that say what to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fakes.trace_lines import ORDER, write_order

ROOT = Path(__file__).resolve().parents[3]


def traces(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "local_traces", "trace", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_trace_prints_the_spans_as_a_waterfall_with_where_the_time_went(tmp_path: Path) -> None:
    write_order(tmp_path)

    result = traces(ORDER, "--dir", str(tmp_path))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"order {ORDER}: 7 spans in 1 trace(s)")
    assert lines[1].split()[:2] == ["service", "span"]
    assert "push status" in lines[8] and "orders-websocket" in lines[8]
    assert lines[-1] == "in intake 12.0 ms, in the queue 4.0 ms, in processing 25.0 ms, to the socket 15.0 ms"


def test_trace_as_json(tmp_path: Path) -> None:
    write_order(tmp_path)

    result = traces(ORDER, "--dir", str(tmp_path), "--json")

    document = json.loads(result.stdout)
    assert document["phases"]["processing"] == 25
    assert [row["depth"] for row in document["spans"]] == [0, 1, 2, 3, 3, 4, 5]


def test_an_unknown_order_or_folder_says_what_to_do(tmp_path: Path) -> None:
    unknown = traces("no-such-order", "--dir", str(tmp_path))
    missing = traces(ORDER, "--dir", str(tmp_path / "nowhere"))

    assert unknown.returncode == 1 and "no span" in unknown.stderr and "--wait" in unknown.stderr
    assert missing.returncode == 2 and "scripts/run" in missing.stderr
