"""The processing phase's baseline (not a test): a bare consumer of the ``orders`` queue.

What the processor does at its least, on the same broker and the same kind of store, with the host's
session settings: the azure-servicebus SDK's async session receivers (``maxConcurrentSessions`` of them,
``NEXT_AVAILABLE_SESSION``, no prefetch, a session let go after ``sessionIdleTimeout`` without a message or
sooner when slots run short, closed in the background, as the host does), one
SQLite insert per message in a thread (WAL, ``synchronous=NORMAL``, as the store), then complete. No worker
library, no business rules, no status event, no log line. ``bench.pipeline_bench`` runs it in a child process
and measures its CPU and rate next to the host's in the same run.

    .venv/bin/python -m bench.bare_consumer --connection-string ... --queue orders --database x.db --expected 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import threading
import time

from azure.servicebus import NEXT_AVAILABLE_SESSION
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import OperationTimeoutError, SessionCannotBeLockedError

from local_functions_host.servicebus_listener import GIVE_WAY_SECONDS, RECEIVE_POLL_SECONDS, slots_short
from service_platform.servicebus_clients import tls_context


class Store:
    """One SQLite connection per thread, one row per message (the order's correlationId as primary key)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        self._lock = threading.Lock()  # one writer at a time, as the store's SQLite engine
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE IF NOT EXISTS bare_orders (correlation_id TEXT PRIMARY KEY, body TEXT)")

    def insert(self, correlation_id: str, body: bytes) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = sqlite3.connect(self._path, isolation_level=None, timeout=30)
            connection.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT OR IGNORE INTO bare_orders VALUES (?, ?)", (correlation_id, body.decode()))
            connection.execute("COMMIT")


async def consume(connection_string: str, queue: str, store: Store, expected: int, *, sessions: int,
                  idle_seconds: float) -> tuple[int, float]:
    """Messages consumed and the seconds from the first to the last completion."""
    done = 0
    first: float | None = None
    last = 0.0
    finished = asyncio.Event()

    held = 0
    closing: set[asyncio.Task[None]] = set()

    async def drain(receiver) -> None:
        nonlocal done, first, last
        last_message = time.monotonic()
        while not finished.is_set():
            idle = time.monotonic() - last_message
            if idle >= idle_seconds or (idle >= GIVE_WAY_SECONDS and slots_short(sessions, held)):
                return
            wait = min(idle_seconds - idle, RECEIVE_POLL_SECONDS)
            if idle < GIVE_WAY_SECONDS:
                wait = min(wait, GIVE_WAY_SECONDS - idle)
            for message in await receiver.receive_messages(max_message_count=1, max_wait_time=wait):
                await asyncio.to_thread(store.insert, str(message.correlation_id), b"".join(message.body))
                await receiver.complete_message(message)
                now = last_message = time.monotonic()
                first = now if first is None else first
                last = now
                done += 1
                if done >= expected:
                    finished.set()

    async def session_worker(client: ServiceBusClient) -> None:
        nonlocal held
        while not finished.is_set():
            receiver = client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=30,
                                                 prefetch_count=0)
            try:
                await receiver.__aenter__()
                if receiver.session.locked_until_utc is not None:
                    held += 1
                    try:
                        await drain(receiver)
                    finally:
                        held -= 1
            except (OperationTimeoutError, SessionCannotBeLockedError):
                pass  # no session free just now
            finally:
                # As the host: the next session need not wait for the SDK's close (its keep-alive task).
                task = asyncio.create_task(receiver.close())
                closing.add(task)
                task.add_done_callback(closing.discard)

    # The TLS context the services share (the SDK would load its CA bundle again for every session).
    async with ServiceBusClient.from_connection_string(connection_string, ssl_context=tls_context()) as client:
        workers = [asyncio.create_task(session_worker(client)) for _ in range(sessions)]
        await finished.wait()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await asyncio.gather(*closing, return_exceptions=True)
    return done, (last - first) if first is not None else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connection-string", required=True)
    parser.add_argument("--queue", default="orders")
    parser.add_argument("--database", required=True, help="SQLite file of its own")
    parser.add_argument("--expected", type=int, required=True, help="stop after this many messages")
    parser.add_argument("--sessions", type=int, default=128,
                        help="concurrent sessions (host.json: maxConcurrentSessions)")
    parser.add_argument("--idle-seconds", type=float, default=1.0, help="host.json: sessionIdleTimeout")
    options = parser.parse_args()
    done, seconds = asyncio.run(consume(options.connection_string, options.queue, Store(options.database),
                                        options.expected, sessions=options.sessions, idle_seconds=options.idle_seconds))
    print(json.dumps({"messages": done, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
