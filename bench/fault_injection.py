"""Fault injection against the whole system as real processes (not a unit test): prints one line per invariant.

The identity provider, broker, Redis, SQLite, the local Functions host and two WebSocket instances run as
processes. An open-loop sender places orders at ``--rate`` per second over ``--customers`` customers as the
development backend: half with an ``Idempotency-Key`` (re-sent with the same key whenever no ``202`` came
back: a lost answer, a 503, acceptance-unknown), half without one (a lost answer is only counted; a 503
acceptance-unknown is retried with the key the answer hands over, as docs/contracts.md says). Some accepted
orders are followed over a WebSocket that reconnects, to any instance, whenever its socket closes.

Every ``--interval`` seconds one component is killed with SIGKILL and started again two seconds later, in
turn: the Functions host, the broker, each WebSocket instance, Redis, and with ``--store postgres`` the
PostgreSQL server holding the orders (SQLite, the default, is a file inside the host's process); then the
host is restarted gracefully. The load lasts ``--seconds``, or longer until each fault has come once (a
restart takes longer on a slower machine). When the load ends, every accepted order is awaited and the
invariants are checked:

- every order answered 202 reaches a terminal status;
- one row per accepted correlationId, and no row the client was not told about except where a plain
  request (no key) lost its answer (a client must send an Idempotency-Key to be safe there);
- idempotent re-sends were answered with the same correlationId;
- stock is conserved (what left the shelf is what the Completed orders hold);
- every followed order's last frame is its terminal status;
- no order is Failed because of a fault.

    .venv/bin/python -m bench.fault_injection                      # 10 minutes at 100 orders/s, a fault every 15 s
    .venv/bin/python -m bench.fault_injection --store postgres    # the same with PostgreSQL as the store
    .venv/bin/python -m bench.fault_injection --store postgres --seconds 50 --rate 20 --interval 4   # CI's short run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.measure import load_average, machine, note

TERMINAL = {"Completed", "Rejected", "Failed"}
SKUS = ("SKU-1", "SKU-3", "SKU-7", "SKU-10")


@dataclass
class Books:
    """What the clients saw."""

    accepted: dict[str, dict] = field(default_factory=dict)  # correlationId → order body
    keyed_answers: dict[str, set[str]] = field(default_factory=dict)  # Idempotency-Key → correlationIds
    plain_lost: int = 0  # plain requests whose answer never came back
    plain_refused: int = 0  # plain requests answered 503 unavailable (nothing sent)
    retries: int = 0
    followed: dict[str, list[str]] = field(default_factory=dict)  # correlationId → statuses received
    faults: list[str] = field(default_factory=list)
    load_seconds: float = 0.0  # how long orders were placed: --seconds, or longer until every fault came once


async def place(client: httpx.AsyncClient, books: Books, number: int, customers: int, keyed: bool,
                deadline: float) -> None:
    body = {"customerId": f"fi-{number % customers}", "currency": "EUR",
            "items": [{"sku": random.choice(SKUS), "quantity": random.randint(1, 3)}]}
    key = f"fi-{uuid.uuid4()}" if keyed else None
    while True:
        headers = {"Idempotency-Key": key} if key else {}
        try:
            response = await client.post("/orders", json=body, headers=headers)
        except httpx.HTTPError:
            if key is None:
                books.plain_lost += 1
                return
            response = None
        if response is not None and response.status_code == 202:
            cid = response.json()["correlationId"]
            books.accepted[cid] = body
            if key is not None:
                books.keyed_answers.setdefault(key, set()).add(cid)
            return
        if response is not None and response.status_code == 503:
            problem = response.json()
            if problem.get("type", "").endswith("acceptance-unknown"):
                key = key or problem["idempotencyKey"]  # the retry that is the same order
            elif key is None:
                books.plain_refused += 1
                return
        elif response is not None and response.status_code not in (429,):
            raise RuntimeError(f"unexpected answer {response.status_code}: {response.text[:300]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"order {body} never accepted (key {key})")
        books.retries += 1
        await asyncio.sleep(0.5)


async def follow(books: Books, cid: str, token: str, ws_urls: list[str], until: float) -> None:
    from websockets.asyncio.client import connect

    seen = books.followed.setdefault(cid, [])
    attempt = 0
    while time.monotonic() < until and not (seen and seen[-1] in TERMINAL):
        target = ws_urls[attempt % len(ws_urls)]
        attempt += 1
        try:
            async with connect(f"{target}?correlationId={cid}&token={token}", proxy=None, open_timeout=5) as ws:
                async for message in ws:
                    frame = json.loads(message)
                    if frame.get("type") == "status" and frame["correlationId"] == cid:
                        seen.append(frame["status"])
                        if frame["status"] in TERMINAL:
                            return
        except Exception:  # noqa: BLE001 - the instance died or refused: reconnect to another one
            await asyncio.sleep(0.5)


async def drive(stack, books: Books, options: argparse.Namespace, every_fault: threading.Event) -> list[asyncio.Task]:
    """Place orders for ``--seconds``, and on until ``every_fault`` is set: each fault then happens under load,
    however long a restart takes on this machine."""
    from local_servers.orders_api import BackendAndOperatorAuth

    ws_urls = [stack.ws_url(i) for i in range(len(stack.websockets))]
    followers: list[asyncio.Task] = []
    started = time.monotonic()
    end = started + options.seconds
    tasks = []
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=15, auth=BackendAndOperatorAuth(stack.identity_url),
                                 limits=httpx.Limits(max_connections=64)) as client:
        number = 0
        while (now := time.monotonic()) < end or not every_fault.is_set():
            due = started + number / options.rate
            # Always yield: a sender behind schedule must still let the requests it created run.
            await asyncio.sleep(max(0.0, due - now))
            load_end = max(end, now)
            tasks.append(asyncio.create_task(place(client, books, number, options.customers, number % 2 == 0,
                                                   deadline=load_end + 90)))
            number += 1
            if number % options.follow_every == 0:
                followers.append(asyncio.create_task(follow_latest(books, ws_urls, load_end + 120, client)))
        books.load_seconds = time.monotonic() - started
        await asyncio.gather(*tasks)
    return followers


async def follow_latest(books: Books, ws_urls: list[str], until: float, client: httpx.AsyncClient) -> None:
    await asyncio.sleep(0.05)
    if not books.accepted:
        return
    cid = next(reversed(books.accepted))
    if cid in books.followed:
        return
    try:
        status = await client.get(f"/orders/{cid}")
    except httpx.HTTPError:
        return  # the host is down right now: follow a later order
    if status.status_code != 200:
        return
    # The token comes with the 202; the operator's read gives none, so one is issued as the intake would.
    from service_platform.notify_tokens import DEFAULT_KEY_ID, DEV_NOTIFY_TOKEN_SECRET, NotifyTokenSigner

    token = NotifyTokenSigner(DEFAULT_KEY_ID, DEV_NOTIFY_TOKEN_SECRET.encode()).issue(cid, 3600)
    await follow(books, cid, token, ws_urls, until)


def kill_postgres(cluster) -> None:
    """SIGKILL the postmaster (its backends notice and exit), then start the server again: crash recovery."""
    import signal

    pid = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    time.sleep(2)
    for attempt in range(20):
        try:
            cluster.start()
            return
        except subprocess.CalledProcessError:  # backends of the killed server still hold its shared memory
            time.sleep(0.5)
    cluster.start()


def inject_faults(stack, books: Books, options: argparse.Namespace, stop: threading.Event,
                  every_fault: threading.Event, cluster=None) -> None:
    """One fault every ``--interval`` seconds, in turn, until ``stop``; ``every_fault`` is set once each has
    been injected."""
    import signal

    faults = ["host", "broker", *[f"ws-{i}" for i in range(len(stack.websockets))], "redis",
              *(["postgres"] if cluster is not None else []), "host-graceful"]
    turn = 0
    while not stop.wait(options.interval):
        fault = faults[turn % len(faults)]
        turn += 1
        note(f"fault: {fault}")
        books.faults.append(fault)
        if fault == "host":
            stack.host.kill()
            time.sleep(2)
            stack.start_host()
        elif fault == "host-graceful":
            stack.host.stop()
            stack.start_host()
        elif fault == "broker":
            stack.broker.kill()
            time.sleep(2)
            stack.start_broker()
        elif fault.startswith("ws-"):
            index = int(fault.split("-")[1])
            stack.websockets[index].kill()
            time.sleep(2)
            stack.start_websocket(index)
        elif fault == "redis" and stack.redis is not None and getattr(stack.redis, "process", None) is not None:
            stack.redis.process.send_signal(signal.SIGKILL)
            stack.redis.process.wait()
            time.sleep(2)
            stack.redis.start()
        elif fault == "postgres":
            kill_postgres(cluster)
        if turn == len(faults):
            every_fault.set()


def check(stack, books: Books, stock_before: dict[str, int], database) -> list[tuple[str, bool, str]]:
    from local_servers.orders_api import BackendAndOperatorAuth

    results = []
    finals: dict[str, str] = {}
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=stack.api_url, timeout=15, auth=BackendAndOperatorAuth(stack.identity_url)) as api:
        pending = set(books.accepted)
        while pending and time.monotonic() < deadline:
            for cid in list(pending):
                try:
                    response = api.get(f"/orders/{cid}")
                except httpx.HTTPError as error:
                    note(f"status read failed ({error!r} at {error.request.url}); trying again")
                    time.sleep(1)
                    break
                if response.status_code == 200 and response.json()["status"] in TERMINAL:
                    finals[cid] = response.json()["status"]
                    pending.discard(cid)
            if pending:
                time.sleep(1)
    results.append(("every 202 reaches a terminal status", not pending,
                    f"{len(finals):,} of {len(books.accepted):,} terminal"))
    try:
        with database.engine.connect() as connection:
            rows = Counter(row[0] for row in connection.exec_driver_sql("SELECT correlation_id FROM orders"))
            sold_lines = connection.exec_driver_sql(
                "SELECT l.sku, l.quantity FROM order_lines l JOIN orders o ON o.order_id = l.order_id "
                "WHERE o.status = 'Completed'").fetchall()
        doubled = [cid for cid, n in rows.items() if n > 1]
        untold = [cid for cid in rows if cid not in books.accepted]
        results.append(("one row per accepted order", not doubled and all(c in rows for c in books.accepted),
                        f"{len(rows):,} rows, {len(doubled)} doubled"))
        results.append(("no row the client was not told about, but for plain requests that lost their answer",
                        len(untold) <= books.plain_lost,
                        f"{len(untold)} untold rows; {books.plain_lost} plain requests lost their answer"))
        same = all(len(ids) == 1 for ids in books.keyed_answers.values())
        results.append(("idempotent re-sends answered alike", same,
                        f"{len(books.keyed_answers):,} keys, {books.retries:,} re-sends"))
        sold: Counter[str] = Counter()
        for sku, quantity in sold_lines:
            sold[sku] += quantity
        conserved = all(stock_before[sku] - database.stock(sku) == sold[sku] for sku in SKUS)
        results.append(("stock conserved", conserved, ", ".join(
            f"{sku}: {stock_before[sku] - database.stock(sku)} taken, {sold[sku]} sold" for sku in SKUS)))
        followed_ok = [cid for cid, seen in books.followed.items() if seen and seen[-1] == finals.get(cid)]
        results.append(("every followed order's last frame is its terminal status",
                        len(followed_ok) == len(books.followed),
                        f"{len(followed_ok)} of {len(books.followed)} followed orders"))
        failed = [cid for cid, status in finals.items() if status == "Failed"]
        results.append(("no order Failed because of a fault", not failed, f"{len(failed)} Failed"))
    finally:
        database.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--interval", type=float, default=15)
    parser.add_argument("--follow-every", type=int, default=10, help="follow every n-th order over a WebSocket")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                        help="the orders' SQL store: SQLite (default) or a private PostgreSQL server, then killed too")
    options = parser.parse_args()
    with contextlib.ExitStack() as resources:
        cluster = None
        if options.store == "postgres":
            from local_servers.postgres_cluster import running_postgres

            note("starting a private PostgreSQL server for the orders")
            cluster = resources.enter_context(running_postgres())
        return run_suite(options, cluster)


def run_suite(options: argparse.Namespace, cluster) -> int:
    from local_servers.orders_api import OrdersDatabase
    from local_stack.stack import LocalStack, StackPorts

    data_dir = Path(tempfile.mkdtemp(prefix="fault-injection-"))
    environ = {"CUSTOMER_MAX_ORDERS_PER_MINUTE": "1000000", "CUSTOMER_MAX_ORDERS_IN_FLIGHT": "1000000"}
    if cluster is not None:
        environ["SQL_URL"] = cluster.create_database()
    stack = LocalStack(data_dir, StackPorts.free(websocket_instances=2), environ=environ, telemetry=False)
    note(f"{machine()}; load average {load_average()}; starting the system in {data_dir}")
    stack.start()  # migrates and seeds the store
    books = Books()
    database = OrdersDatabase(environ["SQL_URL"]) if cluster is not None else OrdersDatabase.sqlite(
        data_dir / "orders.db")
    try:
        with database.engine.begin() as connection:  # enough stock that no order is rejected for want of it
            connection.exec_driver_sql("UPDATE products SET stock = 1000000")
        stock_before = {sku: database.stock(sku) for sku in SKUS}
        database.engine.dispose()  # no pooled connection of the checker's outlives a killed server
        stop, every_fault = threading.Event(), threading.Event()
        note(f"load: {options.rate:.0f} orders/s over {options.customers} customers for {options.seconds:.0f}s, "
             f"a fault every {options.interval:.0f}s")
        failures: list[BaseException] = []

        async def run() -> None:
            try:
                followers = await drive(stack, books, options, every_fault)
                stop.set()
                await asyncio.gather(*followers)
            except BaseException as error:
                failures.append(error)
                raise
            finally:
                stop.set()

        # The load runs in a thread; faults are injected from the main thread, because the processes it
        # restarts die with the thread that started them (PR_SET_PDEATHSIG is per thread).
        load = threading.Thread(target=lambda: asyncio.run(run()), daemon=True, name="load")
        load.start()
        inject_faults(stack, books, options, stop, every_fault, cluster)
        load.join()
        if failures:
            raise failures[0]
        note("load over; waiting for every accepted order and checking")
        results = check(stack, books, stock_before, database)
    finally:
        database.close()
        stack.stop()
    print(f"\nmachine: {machine()}; store: {options.store}; {books.load_seconds:.0f}s at {options.rate:.0f} orders/s, "
          f"faults: {', '.join(books.faults) or 'none'}")
    for name, held, detail in results:
        print(f"{'HELD  ' if held else 'BROKEN'} {name}: {detail}")
    if all(held for _, held, _ in results):
        shutil.rmtree(data_dir, ignore_errors=True)
        return 0
    print(f"\nthe logs of every component are kept in {data_dir / 'logs'}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
