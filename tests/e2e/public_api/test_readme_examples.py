"""The README's curl examples, run as printed against the whole system (only the ports differ: the test's
stack runs on free ones)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.stack import LocalStack, StackPorts

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("try it from another terminal", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands, current = [], ""
    for line in block.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        current += line.split("   #")[0].rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(Path(tmp_path_factory.mktemp("readme")), StackPorts.free(websocket_instances=0), environ={})
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_the_curl_examples_work_as_printed(stack: LocalStack) -> None:
    commands = readme_commands()
    assert len(commands) == 7 and commands[0].startswith("TOKEN=$(.venv/bin/python -m local_identity token alice)")
    ports = {"127.0.0.1:7071": f"127.0.0.1:{stack.ports.host}", "127.0.0.1:5683": f"127.0.0.1:{stack.ports.broker_http}"}
    env = {**os.environ, "LOCAL_IDENTITY_URL": stack.identity_url,
           "LOCAL_TELEMETRY_DIR": str(stack.data_dir / "telemetry")}

    def run(command: str, **substitutions: str) -> str:
        for printed, actual in {**ports, **substitutions}.items():
            command = command.replace(printed, actual)
        script = f"set -euo pipefail\n{commands[0]}\n{command}"
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    accepted = json.loads(run(commands[1]))
    assert accepted["status"] == "Accepted" and set(accepted) >= {"correlationId", "statusUrl", "notifyUrl", "notifyToken"}
    deadline = time.monotonic() + 30
    while (status := json.loads(run(commands[2], **{"<correlationId>": accepted["correlationId"]})))["status"] == "Accepted":
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    assert status["status"] == "Completed" and status["orderId"] and status["total"] == "37.80"
    assert json.loads(run(commands[3]))["status"] == 401
    assert json.loads(run(commands[4]))["openapi"].startswith("3.1")
    assert "orders" in json.loads(run(commands[5]))
    waterfall = run(commands[6], **{"<correlationId>": f"{accepted['correlationId']} --wait 10"})
    assert waterfall.startswith(f"order {accepted['correlationId']}: ")
    assert "POST /api/orders" in waterfall and "send orders" in waterfall and "process orders" in waterfall
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n", run("echo $TOKEN"))
