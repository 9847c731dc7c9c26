"""Throughput of the local broker (localbus) through the real azure-servicebus SDK.

Starts ``python -m localbus`` (durable, SQLite) on free ports and drives it from 1 and 2 client processes:
batched send, single send, and receive+complete with prefetch. Prints msgs/s and the CPU seconds the
broker and the clients used during each run. Targets on a 2-core machine: batched send >= 3,000 msg/s,
receive+complete >= 1,000 msg/s, and the broker using less CPU than its clients in every row.

    .venv/bin/python -m bench.broker_bench [--messages 6000] [--single 1500] [--body-bytes 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.measure import ROOT, cpu_seconds
from localbus.embedded import ready_line

QUEUE = "bench"
CONFIG = {"queues": [{"name": QUEUE, "lockDuration": "PT5M", "maxSizeInMegabytes": 5120}]}




# ----- worker side ---------------------------------------------------------------------------------
def worker(kind: str, conn_str: str, count: int, body_bytes: int) -> None:
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    body = b"x" * body_bytes
    with ServiceBusClient.from_connection_string(conn_str) as client:
        if kind in ("batch", "single"):
            handler = client.get_queue_sender(QUEUE)
        else:
            handler = client.get_queue_receiver(QUEUE, prefetch_count=100, max_wait_time=5)
        with handler:
            if kind != "receive":
                handler.send_messages(ServiceBusMessage(b"warm-up"))  # opens the link before timing
            else:
                handler.peek_messages(max_message_count=1)
            print("ready", flush=True)
            sys.stdin.readline()
            cpu0 = time.process_time()
            t0 = last = time.perf_counter()
            done = 0
            if kind == "batch":
                while done < count:
                    n = min(100, count - done)
                    handler.send_messages([ServiceBusMessage(body) for _ in range(n)])
                    done += n
            elif kind == "single":
                for _ in range(count):
                    handler.send_messages(ServiceBusMessage(body))
                done = count
            else:
                # Drain until the queue stays empty; time ends at the last completion, not after the idle wait.
                idle = 0
                while idle < 2:
                    batch = handler.receive_messages(max_message_count=100, max_wait_time=0.5)
                    if not batch:
                        idle += 1
                        continue
                    idle = 0
                    for m in batch:
                        handler.complete_message(m)
                    done += len(batch)
                    last = time.perf_counter()
            end = last if kind == "receive" else time.perf_counter()
            elapsed = end - t0
            print(json.dumps({"count": done, "seconds": elapsed, "cpu": time.process_time() - cpu0}), flush=True)


# ----- coordinator ---------------------------------------------------------------------------------
def run_round(kind: str, procs: int, per_proc: int, conn_str: str, broker_pid: int, body_bytes: int) -> dict:
    workers = [
        subprocess.Popen([sys.executable, "-m", "bench.broker_bench", "--worker", kind, conn_str, str(per_proc), str(body_bytes)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(procs)
    ]
    for w in workers:
        line = w.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"bench worker failed to start: {line!r}")
    broker_cpu0 = cpu_seconds(broker_pid)
    for w in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    results = [json.loads(w.stdout.readline()) for w in workers]
    # Workers started together; the slowest one's own clock ends the row (receivers stop at their last message).
    wall = max(r["seconds"] for r in results)
    broker_cpu = cpu_seconds(broker_pid) - broker_cpu0
    for w in workers:
        w.stdin.close()
        w.wait(30)
        w.stdout.close()
    total = sum(r["count"] for r in results)
    return {
        "kind": kind, "procs": procs, "messages": total, "seconds": wall, "rate": total / wall,
        "broker_cpu": broker_cpu, "client_cpu": sum(r["cpu"] for r in results),
    }


def broker_ports(broker: subprocess.Popen, log_path: Path, timeout: float = 15.0) -> tuple[int, int]:
    """The AMQP and HTTP ports from the broker's ``"event": "ready"`` log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.poll() is not None:
            raise RuntimeError(f"the broker exited with {broker.returncode}:\n{log_path.read_text()[-2000:]}")
        entry = ready_line(log_path)
        if entry is not None:
            return int(entry["amqpPort"]), int(entry["httpPort"])
        time.sleep(0.05)
    raise TimeoutError(f"the broker did not become ready within {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=6000, help="messages per row for batched send / receive")
    parser.add_argument("--single", type=int, default=1500, help="messages per row for single send")
    parser.add_argument("--body-bytes", type=int, default=200)
    parser.add_argument("--in-memory", action="store_true", help="run the broker without its SQLite store")
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "CONN", "COUNT", "BODY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, conn, count, body = args.worker
        worker(kind, conn, int(count), int(body))
        return 0

    with tempfile.TemporaryDirectory(prefix="localbus-bench-") as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(CONFIG))
        # Port 0: the broker binds free ports and names them in its "ready" log line (its only info lines
        # besides that are per ended connection, a handful per round).
        cmd = [sys.executable, "-m", "localbus", "--config", str(config_path), "--port", "0", "--http-port", "0",
               "--log-level", "info"]
        cmd += ["--in-memory"] if args.in_memory else ["--data-dir", str(Path(tmp) / "data")]
        log_path = Path(tmp) / "localbus.log"
        with log_path.open("wb") as log:
            broker = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            port, http_port = broker_ports(broker, log_path)
            conn_str = (f"Endpoint=sb://localhost:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
                        "SharedAccessKey=bG9jYWxidXMtZGV2ZWxvcG1lbnQta2V5LW5vdC1hLXNlY3JldA==;UseDevelopmentEmulator=true;")
            rows = []
            for procs in (1, 2):
                rows.append(run_round("batch", procs, args.messages // procs, conn_str, broker.pid, args.body_bytes))
                rows.append(run_round("single", procs, args.single // procs, conn_str, broker.pid, args.body_bytes))
                # Receivers drain what this round's sends left (plus the warm-up messages).
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/queues", timeout=5) as resp:
                    backlog = json.load(resp)[QUEUE]["active"]
                rows.append(run_round("receive", procs, backlog, conn_str, broker.pid, args.body_bytes))
        finally:
            broker.terminate()
            broker.wait(15)

    names = {"batch": "batched send (100/batch)", "single": "single send", "receive": "receive+complete (prefetch 100)"}
    targets = {"batch": 3000, "single": None, "receive": 1000}
    print(f"localbus ({'in-memory' if args.in_memory else 'SQLite WAL'}), {args.body_bytes}-byte bodies, {os.cpu_count()} CPUs")
    header = f"{'scenario':34} {'clients':>7} {'messages':>8} {'msg/s':>8} {'target':>7} {'broker CPU s':>12} {'clients CPU s':>13} {'broker<clients':>14}"
    print(header)
    print("-" * len(header))
    ok = True
    for r in rows:
        target = targets[r["kind"]]
        hit = target is None or r["rate"] >= target
        lighter = r["broker_cpu"] < r["client_cpu"]
        ok &= hit and lighter
        print(f"{names[r['kind']]:34} {r['procs']:>7} {r['messages']:>8} {r['rate']:>8.0f} {target or '-':>7} "
              f"{r['broker_cpu']:>12.2f} {r['client_cpu']:>13.2f} {'yes' if lighter else 'NO':>14}")
    print("all targets met" if ok else "some targets missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
