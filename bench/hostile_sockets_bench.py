"""Hostile sockets against one WebSocket service instance (not a test): prints a table.

Legitimate subscribers follow one order each and time every status push (event sent → frame decoded),
first alone (the baseline of this run), then while attacker processes keep
- ``--hostile`` sockets open with valid notify tokens, each sending maximum-size (4 KiB) frames of junk
  subscribe commands as fast as it can and never reading what comes back, reconnecting whenever the
  instance closes it, and
- a loop of handshakes with junk tokens.

The instance's resident memory is sampled throughout and compared with its Kubernetes memory limit
(k8s/base/websocket.yaml). The per-client socket cap is raised for the run: here every attacker shares one
address, in the wild it would come from many.

    .venv/bin/python -m bench.hostile_sockets_bench            # 3,000 hostile sockets, about a minute
    .venv/bin/python -m bench.hostile_sockets_bench --quick    # 500, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid

from bench.measure import ROOT, aligned_table, load_average, machine, note, percentile, rss_kib
from bench.websocket_bench import (
    INTERNAL_SECRET,
    NOTIFY_SECRET,
    Publisher,
    Target,
    events_for,
    raise_file_limit,
    ready_port,
    spawn,
    spawn_listening,
    stop,
    wait_line,
)

MAX_FRAME = 4 * 1024


def memory_limit_mib() -> int:
    text = (ROOT / "k8s" / "base" / "websocket.yaml").read_text()
    limits = text.split("limits:", 1)[1]
    return int(limits.split("memory:", 1)[1].split()[0].removesuffix("Mi"))


# ------------------------------------------------------------------------------------------ attacker role

async def attacker(url: str, count: int, seconds: float) -> None:
    from websockets.asyncio.client import connect

    from service_platform.notify_tokens import DEFAULT_KEY_ID, NotifyTokenSigner

    raise_file_limit()
    signer = NotifyTokenSigner(DEFAULT_KEY_ID, NOTIFY_SECRET.encode())
    deadline = time.monotonic() + seconds
    stats = {"connected": 0, "closed_by_server": 0, "refused": 0, "junk_handshakes": 0, "frames": 0}
    junk = json.dumps({"action": "subscribe", "correlationId": str(uuid.uuid4()), "token": "x" * 16,
                       "pad": "#" * MAX_FRAME})[:MAX_FRAME - 2] + '"}'

    async def hostile_socket() -> None:
        while time.monotonic() < deadline:
            cid = str(uuid.uuid4())
            try:
                ws = await connect(f"{url}?correlationId={cid}&token={signer.issue(cid, 3600)}", proxy=None,
                                   compression=None, open_timeout=30, ping_interval=None, max_size=None,
                                   max_queue=None)
            except Exception:  # noqa: BLE001 - a refusal is what a defended instance does
                stats["refused"] += 1
                await asyncio.sleep(0.5)
                continue
            stats["connected"] += 1
            ws.transport.pause_reading()  # really never read: the instance's replies back up on its side
            try:
                while time.monotonic() < deadline:
                    await ws.send(junk)
                    stats["frames"] += 1
            except Exception:  # noqa: BLE001 - closed by the instance (frame flood, overflow, size)
                stats["closed_by_server"] += 1
            finally:
                ws.transport.abort()
            await asyncio.sleep(1.0)  # and back for more, as a stubborn client would

    async def junk_handshakes() -> None:
        while time.monotonic() < deadline:
            try:
                await connect(f"{url}?correlationId={uuid.uuid4()}&token=%C2%B2.{random.random()}", proxy=None,
                              open_timeout=10)
            except Exception:  # noqa: BLE001 - refused, as it must be
                stats["junk_handshakes"] += 1

    tasks = [asyncio.create_task(hostile_socket()) for _ in range(count)]
    tasks += [asyncio.create_task(junk_handshakes()) for _ in range(4)]
    print(json.dumps({"started": True}), flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(stats), flush=True)


# ------------------------------------------------------------------------------------------------ driver

async def legitimate_round(target: Target, subscribers: int, rounds: int) -> list[float]:
    """Latencies (ms) of ``rounds`` pushes to each of ``subscribers`` sockets: each round every socket
    follows a new order (a subscribe frame), then that order's ``Completed`` event is pushed."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from service_platform.notify_tokens import DEFAULT_KEY_ID, NotifyTokenSigner

    signer = NotifyTokenSigner(DEFAULT_KEY_ID, NOTIFY_SECRET.encode())
    latencies: list[float] = []
    sockets = []
    for _ in range(subscribers):
        cid = str(uuid.uuid4())
        ws = await connect(f"{target.ws_url}?correlationId={cid}&token={signer.issue(cid, 3600)}", proxy=None,
                           compression=None, open_timeout=60, ping_interval=None)
        sockets.append([cid, ws])
    async with Publisher(target) as publisher:
        for round_number in range(rounds):
            if round_number:
                for entry in sockets:
                    entry[0] = str(uuid.uuid4())
                    await entry[1].send(json.dumps({"action": "subscribe", "correlationId": entry[0],
                                                    "token": signer.issue(entry[0], 3600)}))
            await asyncio.sleep(0.5)  # registration in Redis and the (empty) status read
            sent = time.perf_counter()
            await publisher.send(events_for([cid for cid, _ in sockets], "Completed"))

            async def receive(ws) -> float:  # type: ignore[no-untyped-def]
                try:
                    await asyncio.wait_for(ws.recv(), 15)
                except (TimeoutError, ConnectionClosed):
                    return float("inf")  # not delivered
                return (time.perf_counter() - sent) * 1000

            latencies += await asyncio.gather(*(receive(ws) for _, ws in sockets))
    for _, ws in sockets:
        await ws.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["driver", "attacker"], default="driver")
    parser.add_argument("--url")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--hostile", type=int, default=3000)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    if options.role == "attacker":
        asyncio.run(attacker(options.url, options.count, options.seconds))
        return
    if options.quick:
        options.hostile, options.rounds, options.seconds = 500, 8, 15
    raise_file_limit()

    from local_servers.ports import wait_for_http
    from local_servers.redis_server import running_redis

    status = spawn("-m", "bench.websocket_bench", "--role", "status", "--port", "0")
    status_port = ready_port(status)
    with running_redis() as redis_server:
        service, port = spawn_listening("-m", "websocket_service", env={
            "REDIS_URL": redis_server.url, "STATUS_API_URL": f"http://127.0.0.1:{status_port}/api",
            "NOTIFY_TOKEN_SECRET": NOTIFY_SECRET, "WS_INTERNAL_SECRET": INTERNAL_SECRET, "WS_LOG_LEVEL": "ERROR",
            "WS_REGISTRY_PREFIX": f"hostile{uuid.uuid4().hex[:6]}:", "WS_PROXY_API": "false",
            "WS_MAX_CONNECTIONS_PER_CLIENT": str(options.hostile * 2 + 1000)})
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", service, timeout=30)
            target = Target("websocket_service", port, service, f"ws://127.0.0.1:{port}/ws")
            idle_rss = rss_kib(service.pid)
            note(f"baseline: {options.subscribers} legitimate subscribers, {options.rounds} pushes each")
            baseline = asyncio.run(legitimate_round(target, options.subscribers, options.rounds))

            note(f"attack: {options.hostile} hostile sockets for {options.seconds:.0f}s, junk handshakes")
            per = options.hostile // 2
            attackers = [spawn("-m", "bench.hostile_sockets_bench", "--role", "attacker", "--url", target.ws_url,
                               "--count", str(per), "--seconds", str(options.seconds)) for _ in range(2)]
            for proc in attackers:
                wait_line(proc)
            peak = idle_rss
            started = time.monotonic()
            while time.monotonic() - started < min(8.0, options.seconds / 3):
                peak = max(peak, rss_kib(service.pid))
                time.sleep(0.2)
            note("attack under way: measuring the legitimate subscribers again")
            import threading

            sampling = True

            def sample() -> None:
                nonlocal peak
                while sampling:
                    peak = max(peak, rss_kib(service.pid))
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            attacked = asyncio.run(legitimate_round(target, options.subscribers, options.rounds))
            stats = [json.loads(wait_line(proc)) for proc in attackers]
            sampling = False
            sampler.join()
            for proc in attackers:
                proc.wait(timeout=30)
            alive = service.poll() is None
        finally:
            stop(service)
            stop(status)

    totals = {key: sum(s[key] for s in stats) for key in stats[0]}
    limit = memory_limit_mib()
    print(f"\nmachine: {machine()}; load average {load_average()}")
    print(f"attack: {totals['connected']:,} hostile sockets opened, {totals['closed_by_server']:,} closed by the "
          f"instance, {totals['refused']:,} refused, {totals['frames']:,} 4 KiB frames sent, "
          f"{totals['junk_handshakes']:,} junk-token handshakes refused")
    header = ("row", "push p50 ms", "push p99 ms", "ratio p99", "RSS MiB", "limit MiB", "under limit")
    base50, base99 = percentile(baseline, 0.5), percentile(baseline, 0.99)
    att50, att99 = percentile(attacked, 0.5), percentile(attacked, 0.99)
    rows = [
        ("baseline (no attack)", f"{base50:.1f}", f"{base99:.1f}", "1.00", f"{idle_rss / 1024:.0f}", str(limit), "yes"),
        (f"{options.hostile:,} hostile sockets", f"{att50:.1f}", f"{att99:.1f}", f"{att99 / base99:.2f}",
         f"{peak / 1024:.0f} (peak)", str(limit), "yes" if peak / 1024 < limit and alive else "NO"),
    ]
    print(aligned_table(header, rows))
    lost = sum(1 for value in attacked if value == float("inf"))
    print(f"\nlegitimate pushes not delivered within 15 s under attack: {lost} of {len(attacked)}; "
          f"the instance {'kept running' if alive else 'DIED'}")


if __name__ == "__main__":
    main()
