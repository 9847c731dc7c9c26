"""``python -m localbus``: readiness line, HTTP stats, the stats CLI, config errors and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from localbus.tests.helpers import receive_n

ROOT = Path(__file__).resolve().parents[3]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _start(*args: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", "localbus", *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=_env())
    started = time.monotonic()
    for line in proc.stderr:
        record = json.loads(line)
        if record.get("event") == "ready":
            record["startup_seconds"] = time.monotonic() - started
            return proc, record
    raise AssertionError(f"the broker exited with {proc.wait()} before it was ready")


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.mark.e2e
def test_run_stats_and_sigterm(tmp_path):
    proc, ready = _start("--port", "0", "--http-port", "0", "--data-dir", str(tmp_path))
    try:
        assert ready["level"] == "INFO" and ready["service"] == "broker"
        assert ready["connectionString"].startswith(f"Endpoint=sb://localhost:{ready['amqpPort']};")
        assert ready["connectionString"].endswith("UseDevelopmentEmulator=true;")
        assert ready["queues"] == ["orders", "order-status"]
        http_port = ready["httpPort"]
        assert _get(http_port, "/healthz") == (200, {"status": "ok"})

        with ServiceBusClient.from_connection_string(ready["connectionString"]) as client:
            with client.get_queue_sender("orders") as sender:
                sender.send_messages([ServiceBusMessage("o", session_id="cust-1", message_id="o-1"),
                                      ServiceBusMessage("p", session_id="cust-2", message_id="o-2")])
            with client.get_queue_sender("order-status") as sender:
                sender.send_messages(ServiceBusMessage("s"))
            with client.get_queue_receiver("orders", session_id="cust-1", max_wait_time=5) as receiver:
                [m] = receive_n(receiver, 1)
                status, queues = _get(http_port, "/queues")
                assert status == 200
                orders = queues["orders"]
                assert orders["active"] == 2 and orders["locked"] == 1
                assert {s["id"]: s["locked"] for s in orders["sessions"]} == {"cust-1": True, "cust-2": False}
                assert queues["order-status"]["active"] == 1
                receiver.complete_message(m)

        table = subprocess.run([sys.executable, "-m", "localbus", "stats", "--http-port", str(http_port)],
                               capture_output=True, text=True, env=_env(), timeout=30)
        assert table.returncode == 0
        header, *rows = table.stdout.splitlines()
        assert header.split() == ["queue", "active", "locked", "deferred", "scheduled", "deadLettered", "sessions", "receivers"]
        by_queue = {r.split()[0]: r.split() for r in rows}
        assert by_queue["orders"][1] == "1" and by_queue["orders"][6] == "1"
        assert by_queue["order-status"][1] == "1"
        assert _get(http_port, "/nope")[0] == 404

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        rest = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]
        assert rest[-1]["event"] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    # What was accepted before SIGTERM is there after a restart.
    proc, ready = _start("--port", "0", "--http-port", "0", "--data-dir", str(tmp_path))
    try:
        assert _get(ready["httpPort"], "/queues")[1]["orders"]["active"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        proc.stderr.close()


def test_starts_in_well_under_a_second(tmp_path):
    from localbus import Broker

    started = time.monotonic()
    broker = Broker(None, port=0, http_port=0, data_dir=tmp_path).start()
    try:
        assert time.monotonic() - started < 0.5
    finally:
        broker.stop()
    # The whole process, interpreter included, on a busy machine.
    proc, ready = _start("--port", "0", "--http-port", "0", "--in-memory")
    try:
        assert ready["startup_seconds"] < 3.0
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()


def test_stats_cli_explains_when_no_broker_runs():
    result = subprocess.run([sys.executable, "-m", "localbus", "stats", "--http-port", "1"],
                            capture_output=True, text=True, env=_env(), timeout=30)
    assert result.returncode == 1
    assert "Is `python -m localbus` running" in result.stderr


def test_bad_config_is_refused_with_the_offending_key(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"queues": [{"name": "q", "lockDuration": "ten minutes"}]}))
    result = subprocess.run([sys.executable, "-m", "localbus", "--config", str(bad), "--port", "0", "--http-port", "0",
                             "--in-memory"], capture_output=True, text=True, env=_env(), timeout=30)
    assert result.returncode == 2
    record = json.loads(result.stderr.strip().splitlines()[-1])
    assert record["event"] == "config-error"
    assert "queues[0].lockDuration" in record["message"]
