"""WebSocket service benchmark (not a test): prints a table.

Per instance, next to a bare ``websockets`` server measured in the same run:
- idle sockets held and memory per socket (server RSS growth / sockets) at ``--sockets`` connections,
  opened by several client processes;
- events/s delivered to ``--subscribers`` sockets (each following ``--orders`` orders), events offered as
  fast as the instance takes them;
- event→client latency p50/p99 at a fixed offered rate (``--rate`` events/s);
- overload: events offered at twice the rate the instance delivered as fast as it could, over several
  publisher connections, open loop (each batch written when due, pipelined, answered when the service gets
  to it); every event must still arrive and no client be closed.

Each subscriber's orders are split in three, one part per phase (Accepted, then Completed, for each order).

Events enter the service through ``POST /internal/events`` (the path a forwarded event takes, batches of
``--batch``) and the bare server through one publisher WebSocket; "event→client" runs from the moment the
batch is sent to the moment a client has decoded the frame.

    .venv/bin/python -m bench.websocket_bench            # full run, about two minutes on 2 cores
    .venv/bin/python -m bench.websocket_bench --quick    # smaller figures, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

from bench.measure import ROOT, aligned_table, rss_kib

NOTIFY_SECRET = "bench-notify-secret"
INTERNAL_SECRET = "bench-internal-secret"


OVERLOAD_PUBLISHERS = 8


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard




# ------------------------------------------------------------------------------------------ child roles


async def status_stub(port: int) -> None:
    """Answers every request with 404 (no order known), keep-alive: the status API as cheap as it gets.

    ``GET /reads`` answers how many status reads it has answered, so that the driver can wait until the
    service has read the current status of every order subscribed to before it measures events."""
    body = b'{"title":"not found"}'
    reply = (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: "
             + str(len(body)).encode() + b"\r\n\r\n" + body)
    reads = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal reads
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"GET /reads "):
                    count = str(reads).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(count)).encode() + b"\r\n\r\n"
                                 + count)
                    continue
                reads += 1
                writer.write(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)  # port 0: the one it got
    async with server:
        await server.serve_forever()


async def bare_server(port: int) -> None:
    """A bare ``websockets`` server: echoes frames, and fans published events out to subscribed sockets."""
    from urllib.parse import parse_qs, urlsplit

    from websockets.asyncio.server import broadcast, serve

    followers: dict[str, object] = {}

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        target = urlsplit(ws.request.path)
        if target.path == "/push":
            async for message in ws:
                for event in json.loads(message)["events"]:
                    conn = followers.get(event["correlationId"])
                    if conn is not None:
                        # The frame the service sends: the event's fields, its time as "at".
                        frame = {key: value for key, value in event.items() if key != "updatedAt"}
                        broadcast([conn], json.dumps({"type": "status", **frame, "at": event["updatedAt"]}))
            return
        cid = parse_qs(target.query).get("correlationId", [""])[0]
        followers[cid] = ws
        try:
            async for message in ws:
                data = json.loads(message)
                if data.get("action") == "subscribe":
                    followers[data["correlationId"]] = ws
                else:
                    await ws.send(message)
        finally:
            followers.pop(cid, None)

    raise_file_limit()
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=16, backlog=4096) as server:
        print(f"ready {next(iter(server.sockets)).getsockname()[1]}", flush=True)  # port 0: the one it got
        await asyncio.Future()


async def client(url: str, count: int, orders: int, wave: int) -> None:
    """Opens ``count`` sockets, each following ``orders`` orders; then obeys commands on stdin.

    Commands: ``expect N`` (collect N status frames, report latencies), ``close``.
    """
    from service_platform.notify_tokens import DEFAULT_KEY_ID, NotifyTokenSigner
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
    from websockets.protocol import State

    raise_file_limit()
    secret = NOTIFY_SECRET.encode()
    sockets = []
    opened = failed = 0
    ids: list[list[str]] = []

    async def open_one() -> None:
        nonlocal opened, failed
        mine = [str(uuid.uuid4()) for _ in range(orders)]
        token = NotifyTokenSigner(DEFAULT_KEY_ID, secret).issue(mine[0], 3600)
        try:
            ws = await connect(f"{url}?correlationId={mine[0]}&token={token}", proxy=None, compression=None,
                               open_timeout=60, ping_interval=None, max_queue=None)
        except Exception:  # noqa: BLE001 - counted and reported
            failed += 1
            return
        for cid in mine[1:]:
            await ws.send(json.dumps({"action": "subscribe", "correlationId": cid,
                                      "token": NotifyTokenSigner(DEFAULT_KEY_ID, secret).issue(cid, 3600)}))
        sockets.append(ws)
        ids.append(mine)
        opened += 1

    for start in range(0, count, wave):
        await asyncio.gather(*(open_one() for _ in range(min(wave, count - start))))
    print(json.dumps({"ready": True, "opened": opened, "failed": failed, "ids": ids}), flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "close":
            break
        expected = int(line.split()[1])
        latencies: list[float] = []
        first = last = 0.0
        closed = 0
        done = asyncio.Event()

        async def drain(ws) -> None:  # type: ignore[no-untyped-def]
            nonlocal first, last, closed
            while not done.is_set():
                try:
                    raw = await ws.recv()
                except ConnectionClosed:
                    closed += 1  # the server closed a client that reads everything it is sent
                    return
                frame = json.loads(raw)
                now = time.time()
                if frame.get("type") != "status":
                    continue
                first = first or now
                last = now
                latencies.append(now - float(frame["at"]))
                if len(latencies) >= expected:
                    done.set()

        tasks = [asyncio.create_task(drain(ws)) for ws in sockets]
        try:
            await asyncio.wait_for(done.wait(), 120)
        except TimeoutError:
            pass
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sockets = [ws for ws in sockets if ws.state is State.OPEN]
        print(json.dumps({"received": len(latencies), "first": first, "last": last, "latencies": latencies,
                          "closed": closed}), flush=True)
    for ws in sockets:
        ws.transport.abort()


# ---------------------------------------------------------------------------------------------- driver


def spawn(*args: str, env: dict[str, str] | None = None, quiet: bool = True) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL if quiet else None, text=True)


def spawn_listening(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """``spawn`` handing the child a listening socket on a free port (``LISTEN_FD``); returns it and the port."""
    from local_servers.ports import popen_listening

    return popen_listening([sys.executable, *args], env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
                           cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)


def ready_port(proc: subprocess.Popen[str]) -> int:
    """The port a child role started with ``--port 0`` reports in its ``ready <port>`` line."""
    return int(wait_line(proc).split()[1])


def wait_line(proc: subprocess.Popen[str]) -> str:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        raise RuntimeError(f"child {proc.args} exited with {proc.wait()}")
    return line


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        # SIGINT: uvicorn shuts down as on SIGTERM, and a profiled run still writes its profile.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Target:
    name: str
    port: int
    process: subprocess.Popen[str]
    ws_url: str
    publish: object = None
    results: dict[str, object] = field(default_factory=dict)
    status_url: str = ""  # the status API stub the service reads; empty for the bare server


def start_target(kind: str, redis_url: str, status_url: str, orders: int, sockets: int,
                 profile: str | None = None) -> Target:
    """``sockets``: how many the load opens from this one address, above the service's per-client limit."""
    from local_servers.ports import wait_for_http

    if kind == "bare":
        proc = spawn("-m", "bench.websocket_bench", "--role", "bare", "--port", "0")
        port = ready_port(proc)
        name = "bare websockets"
    else:
        runner = ["-m", "cProfile", "-o", profile] if profile else []
        proc, port = spawn_listening(*runner, "-m", "websocket_service", env={
            "REDIS_URL": redis_url, "STATUS_API_URL": status_url,
            "NOTIFY_TOKEN_SECRET": NOTIFY_SECRET, "WS_INTERNAL_SECRET": INTERNAL_SECRET,
            "WS_MAX_SUBSCRIPTIONS_PER_SOCKET": str(max(orders, 1)), "WS_LOG_LEVEL": "WARNING",
            "WS_MAX_CONNECTIONS_PER_CLIENT": str(sockets + 1000),
            "WS_REGISTRY_PREFIX": f"bench{uuid.uuid4().hex[:6]}:", "WS_PROXY_API": "false"})
        name = "websocket_service"
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=30)
    time.sleep(0.5)
    return Target(name, port, proc, f"ws://127.0.0.1:{port}/ws", status_url="" if kind == "bare" else status_url)


def open_clients(target: Target, total: int, processes: int, orders: int) -> tuple[list[subprocess.Popen[str]], int, list[list[str]]]:
    per = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    clients = [spawn("-m", "bench.websocket_bench", "--role", "client", "--url", target.ws_url, "--count", str(n), "--orders", str(orders))
               for n in per]
    opened, failed, ids = 0, 0, []
    for proc in clients:
        report = json.loads(wait_line(proc))
        opened += report["opened"]
        failed += report["failed"]
        ids.append([cid for sock in report["ids"] for cid in sock])
    if failed:
        print(f"  {target.name}: {failed} of {total} sockets could not be opened", flush=True)
    return clients, opened, ids


def close_clients(clients: list[subprocess.Popen[str]]) -> None:
    for proc in clients:
        if proc.poll() is None:
            proc.stdin.write("close\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
    for proc in clients:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure_idle(target: Target, sockets: int, processes: int) -> None:
    before = rss_kib(target.process.pid)
    started = time.monotonic()
    clients, opened, _ = open_clients(target, sockets, processes, orders=1)
    took = time.monotonic() - started
    time.sleep(2)
    after = rss_kib(target.process.pid)
    held = len(os.listdir(f"/proc/{target.process.pid}/fd"))
    target.results |= {"sockets": opened, "fds": held, "kib_per_socket": (after - before) / max(opened, 1),
                       "connect_s": took}
    close_clients(clients)
    wait_sockets_closed(target)


def wait_sockets_closed(target: Target, timeout: float = 60) -> None:
    """Until the service has seen every idle socket go: the next phase must not meet its connection limit."""
    if not target.status_url:
        time.sleep(1)  # the bare server has no health endpoint and no limit
        return
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"http://127.0.0.1:{target.port}/healthz").json()["sockets"] == 0:
            return
        time.sleep(0.2)
    print(f"  {target.name}: sockets still open {timeout:.0f}s after their clients closed them", flush=True)


class Publisher:
    """Sends event batches to a target: POST /internal/events over one keep-alive connection (a minimal
    HTTP/1.1 client, so the bench's own overhead stays small), or one WebSocket for the bare server."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.ws = None

    async def __aenter__(self) -> Publisher:
        if self.target.name.startswith("bare"):
            from websockets.asyncio.client import connect

            self.ws = await connect(f"ws://127.0.0.1:{self.target.port}/push", proxy=None, compression=None,
                                    max_size=None)
        else:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.target.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        else:
            self.writer.close()
            await self.writer.wait_closed()

    async def send(self, events: list[dict]) -> None:
        """One batch, answered before it returns (the bare server answers nothing)."""
        await self.write(events)
        if self.ws is None:
            await self.read_answer()

    async def write(self, events: list[dict]) -> None:
        """Sends one batch without waiting for its answer: further requests on the same connection are
        HTTP/1.1 pipelining, and only TCP's flow control holds the writer back."""
        at = repr(time.time())
        body = json.dumps({"events": [e | {"updatedAt": at} for e in events]}).encode()
        if self.ws is not None:
            await self.ws.send(body.decode())
            return
        self.writer.write(b"POST /internal/events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                          b"Authorization: Bearer " + INTERNAL_SECRET.encode() + b"\r\nContent-Length: "
                          + str(len(body)).encode() + b"\r\n\r\n" + body)
        await self.writer.drain()

    async def read_answer(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 202"):
            raise RuntimeError(f"the service refused a batch: {head[:80]!r}")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await self.reader.readexactly(length)


def collect(clients: list[subprocess.Popen[str]], expected_per_client: list[int]) -> list[dict]:
    for proc, n in zip(clients, expected_per_client, strict=True):
        proc.stdin.write(f"expect {n}\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    return clients


def results_of(clients: list[subprocess.Popen[str]]) -> list[dict]:
    return [json.loads(wait_line(proc)) for proc in clients]


def events_for(ids: list[str], status: str) -> list[dict]:
    return [{"correlationId": cid, "status": status, "orderId": 1, "total": "1.00", "currency": "EUR",
             "reason": None} for cid in ids]


def lifecycle_events(ids_per_client: list[list[str]]) -> list[dict]:
    """Accepted for every order of every client, then Completed for each."""
    ids = [cid for client_ids in ids_per_client for cid in client_ids]
    return events_for(ids, "Accepted") + events_for(ids, "Completed")


async def publish_fast(target: Target, events: list[dict], batch: int) -> float:
    started = time.time()
    async with Publisher(target) as pub:
        for i in range(0, len(events), batch):
            await pub.send(events[i:i + batch])
    return started


async def publish_paced(target: Target, events: list[dict], batch: int, rate: float, *,
                        pipelined: bool = False) -> float:
    """One batch every ``batch / rate`` seconds. Each batch waits for the answer to the one before, unless
    ``pipelined``: then each is written when it is due, whether or not the service has answered the ones
    before, and the answers are read as they come (open loop). Returns when the last batch was written
    (monotonic)."""
    interval = batch / rate
    batches = [events[i:i + batch] for i in range(0, len(events), batch)]
    async with Publisher(target) as pub:
        answers = asyncio.create_task(read_answers(pub, len(batches))) if pipelined and pub.ws is None else None
        next_at = time.monotonic()
        for part in batches:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await (pub.write(part) if pipelined else pub.send(part))
            next_at += interval
        written = time.monotonic()
        if answers is not None:
            await answers
    return written


async def read_answers(pub: Publisher, count: int) -> None:
    for _ in range(count):
        await pub.read_answer()


async def publish_overload(target: Target, events: list[dict], batch: int, rate: float, publishers: int) -> float:
    """``rate`` events/s over ``publishers`` connections, open loop: a slower service answers later but keeps
    being offered batches at the rate (until TCP's flow control stops a writer). Returns the seconds from
    the first batch to the last one written."""
    started = time.monotonic()
    share = [events[i::publishers] for i in range(publishers)]
    written = await asyncio.gather(*(publish_paced(target, part, batch, rate / publishers, pipelined=True)
                                     for part in share if part))
    return max(written) - started


def interleave(per_client: list[list[str]], orders: int, part: slice) -> list[str]:
    """Ids of the chosen orders of every socket, spread so consecutive events hit different sockets."""
    rows: list[list[str]] = []
    for ids in per_client:
        sockets = [ids[i:i + orders] for i in range(0, len(ids), orders)]
        rows.extend(sock[part] for sock in sockets)
    return [row[j] for j in range(len(rows[0]) if rows else 0) for row in rows if j < len(row)]


def wait_registered(redis_url: str, expected: int, timeout: float = 120) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while client.dbsize() < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    client.close()


def status_reads(status_url: str) -> int:
    from local_servers.ports import DIRECT

    with DIRECT.open(status_url.removesuffix("/api") + "/reads", timeout=10) as response:
        return int(response.read())


def wait_status_reads(status_url: str, expected: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while status_reads(status_url) < expected and time.monotonic() < deadline:
        time.sleep(0.2)


def measure_events(target: Target, redis_url: str, subscribers: int, processes: int, orders: int, batch: int,
                   rate: float) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    reads_before = status_reads(target.status_url) if target.status_url else 0
    clients, opened, ids = open_clients(target, subscribers, processes, orders)
    if target.status_url:
        wait_registered(redis_url, opened * orders)
        # Each subscribe reads the order's current status (about 1.6 ms each through httpx); events are
        # measured once those reads are done, as the bare server has none.
        wait_status_reads(target.status_url, reads_before + opened * orders)
    else:
        time.sleep(1)
    third = orders // 3
    # Throughput: Accepted then Completed for the first third of each socket's orders, as fast as taken.
    fast_ids = [interleave([c], orders, slice(0, third)) for c in ids]
    fast = lifecycle_events(fast_ids)
    collect(clients, [2 * len(c) for c in fast_ids])
    started = asyncio.run(publish_fast(target, fast, batch))
    reports = results_of(clients)
    delivered = sum(r["received"] for r in reports)
    last = max(r["last"] for r in reports)
    target.results |= {"subscribers": opened, "events": delivered, "offered": len(fast),
                       "events_per_s": delivered / max(last - started, 1e-9)}
    # Latency at a fixed offered rate: the second third.
    slow_ids = [interleave([c], orders, slice(third, 2 * third)) for c in ids]
    paced = lifecycle_events(slow_ids)
    collect(clients, [2 * len(c) for c in slow_ids])
    asyncio.run(publish_paced(target, paced, max(1, batch // 4), rate))
    reports = results_of(clients)
    latencies = sorted(x for r in reports for x in r["latencies"])
    if latencies:
        q = statistics.quantiles(latencies, n=100, method="inclusive")
        target.results |= {"p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "paced_delivered": len(latencies),
                           "paced_offered": len(paced)}
    # Overload: the last third offered at twice the rate this server delivered as fast as it could.
    over_ids = [interleave([c], orders, slice(2 * third, orders)) for c in ids]
    over = lifecycle_events(over_ids)
    over_rate = 2 * target.results["events_per_s"]
    collect(clients, [2 * len(c) for c in over_ids])
    offered_seconds = asyncio.run(publish_overload(target, over, batch, over_rate, OVERLOAD_PUBLISHERS))
    reports = results_of(clients)
    target.results |= {"overload_rate": len(over) / max(offered_seconds, 1e-9), "overload_offered": len(over),
                       "overload_delivered": sum(r["received"] for r in reports),
                       "overload_closed": sum(r["closed"] for r in reports)}
    close_clients(clients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["driver", "client", "bare", "status"], default="driver")
    parser.add_argument("--port", type=int)
    parser.add_argument("--url")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--orders", type=int, default=20, help="orders each subscriber follows (events phase)")
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--subscribers", type=int, default=1_000)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", metavar="FILE", help="run the service under cProfile, writing FILE")
    options = parser.parse_args()

    if options.role != "driver":
        import uvloop

        if options.role == "client":
            uvloop.run(client(options.url, options.count, options.orders, wave=200))
        elif options.role == "bare":
            uvloop.run(bare_server(options.port))
        else:
            uvloop.run(status_stub(options.port))
        return

    if options.quick:
        options.sockets, options.subscribers, options.orders = 2_000, 200, 10
    from local_servers.redis_server import running_redis

    limit = raise_file_limit()
    print(f"open-file limit per process: {limit}; cores: {os.cpu_count()}", flush=True)
    status = spawn("-m", "bench.websocket_bench", "--role", "status", "--port", "0")
    status_port = ready_port(status)
    status_url = f"http://127.0.0.1:{status_port}/api"
    targets: list[Target] = []
    try:
        with running_redis() as redis_server:
            for kind in ("bare", "service"):
                target = start_target(kind, redis_server.url, status_url, options.orders,
                                      options.sockets + options.subscribers,
                                      options.profile if kind == "service" else None)
                try:
                    print(f"{target.name}: holding {options.sockets} idle sockets ...", flush=True)
                    measure_idle(target, options.sockets, options.client_processes)
                    print(f"{target.name}: events to {options.subscribers} subscribers ...", flush=True)
                    measure_events(target, redis_server.url, options.subscribers, 2, options.orders,
                                   options.batch, options.rate)
                finally:
                    stop(target.process)
                targets.append(target)
    finally:
        stop(status)

    print()
    header = ("server", "idle sockets", "KiB/socket", "subscribers", "events/s", "ratio",
              f"p50 ms @{options.rate:.0f}/s", "p99 ms", "delivered (paced)", "overload offered/s",
              "delivered (overload)", "clients closed")
    rows = []
    baseline = targets[0].results.get("events_per_s", float("nan")) if targets else float("nan")
    for t in targets:
        r = t.results
        rows.append((t.name, f"{r.get('sockets', 0):,}", f"{r.get('kib_per_socket', 0):.1f}",
                     f"{r.get('subscribers', 0):,}", f"{r.get('events_per_s', 0):,.0f}",
                     f"{r.get('events_per_s', 0) / baseline:.2f}x",
                     f"{r.get('p50_ms', float('nan')):.2f}", f"{r.get('p99_ms', float('nan')):.2f}",
                     f"{r.get('paced_delivered', 0):,}/{r.get('paced_offered', 0):,}",
                     f"{r.get('overload_rate', 0):,.0f} "
                     f"({r.get('overload_rate', 0) / max(r.get('events_per_s', 0), 1e-9):.2f}x its own)",
                     f"{r.get('overload_delivered', 0):,}/{r.get('overload_offered', 0):,}",
                     f"{r.get('overload_closed', 0):,}"))
    print(aligned_table(header, rows))
    print("\nratio: events/s next to bare websockets in this run. Overload: the last third of the events offered at"
          f" twice the server's own events/s over {OVERLOAD_PUBLISHERS} connections, open loop (pipelined batches;"
          " TCP's flow control alone can slow the offer).")
    print("targets per instance: >= 10,000 sockets at <= 20 KiB each; >= 10,000 events/s and >= 0.5x bare websockets"
          " with p99 <= 5 ms; every event delivered and no client closed, paced and at overload")


if __name__ == "__main__":
    main()
