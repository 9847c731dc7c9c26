"""The broker as a whole: store + journal + AMQP reactor thread + HTTP stats endpoint."""

from __future__ import annotations

import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .config import BrokerConfig, load_config
from .journal import SqliteJournal
from .loop import EventLoop
from .server import AmqpHandler
from .store import Store

log = logging.getLogger("localbus")

DEFAULT_PORT = 5682
DEFAULT_HTTP_PORT = 5683


class Broker:
    """A running broker. ``start()`` returns once it accepts connections; ``stop()`` shuts it down."""

    def __init__(
        self,
        config: BrokerConfig | dict | str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        http_port: int | None = DEFAULT_HTTP_PORT,
        data_dir: str | Path | None = None,
        in_memory: bool = False,
    ) -> None:
        self.config = load_config(config)
        self.host = host
        self.port = port
        self.http_port = http_port
        if not in_memory and data_dir is None:
            raise ValueError("data_dir is required unless in_memory=True")
        self.data_dir = None if in_memory else Path(data_dir)
        self._handler: AmqpHandler | None = None
        self._loop: EventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.store: Store | None = None

    @property
    def connection_string(self) -> str:
        return self.config.connection_string(self.port)

    def start(self) -> "Broker":
        journal = SqliteJournal(self.data_dir) if self.data_dir is not None else None
        try:
            self.store = Store(self.config, journal)
        except BaseException:
            if journal is not None:
                journal.close()
            raise
        self._handler = AmqpHandler(self.store, self.config)
        try:
            self._loop = EventLoop(self._handler, self.host, self.port)
        except BaseException:
            self.store.close()
            raise
        self._handler.loop = self._loop
        self.port = self._loop.port
        self._thread = threading.Thread(target=self._run, name="localbus-loop", daemon=True)
        self._thread.start()
        if self.http_port is not None:
            try:
                self._http = ThreadingHTTPServer((self.host, self.http_port), _make_http_handler(self))
            except BaseException:
                self.stop()
                raise
            self._http.daemon_threads = True
            self.http_port = self._http.server_address[1]
            self._http_thread = threading.Thread(target=self._http.serve_forever, name="localbus-http", daemon=True)
            self._http_thread.start()
        return self

    def _run(self) -> None:
        profile_path = os.environ.get("LOCALBUS_PROFILE")
        profiler = None
        if profile_path:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        try:
            self._loop.run()
        except BaseException:  # noqa: BLE001 - logged; the process supervisor sees the thread end
            log.exception("broker loop stopped with an error", extra={"event": "loop-crashed"})
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile_path)

    def stats(self) -> dict[str, Any]:
        """Per-queue counts, computed on the reactor thread."""
        return self._loop.call_soon_threadsafe(self.store.stats).result(timeout=10)

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None and self._thread.is_alive() and self._handler is not None:
            try:
                self._loop.call_soon_threadsafe(self._handler.shutdown).result(timeout=10)
            except Exception:  # noqa: BLE001 - the thread is joined below regardless
                pass
            self._thread.join(timeout=10)
        if self.store is not None:
            self.store.close()
            self.store = None

    def wait(self) -> None:
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _make_http_handler(broker: Broker):
    class StatsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?")[0].rstrip("/") or "/"
            if path == "/healthz":
                self._send(200, {"status": "ok"})
            elif path == "/queues":
                try:
                    self._send(200, broker.stats())
                except Exception as exc:  # noqa: BLE001
                    self._send(503, {"error": f"stats unavailable: {exc}"})
            elif path.startswith("/queues/"):
                name = path[len("/queues/"):]
                stats = broker.stats()
                if name in stats:
                    self._send(200, stats[name])
                else:
                    self._send(404, {"error": f"no queue named {name!r}; known: {sorted(stats)}"})
            else:
                self._send(404, {"error": "unknown path; use GET /queues or GET /healthz"})

        def _send(self, status: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return StatsHandler
