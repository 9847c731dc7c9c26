"""``python -m localbus``: run the broker; ``python -m localbus stats``: print its queue table."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import urllib.error
import urllib.request

from . import logs
from .broker import DEFAULT_HTTP_PORT, DEFAULT_PORT, Broker
from .config import ConfigError
from .journal import DataDirInUse

log = logging.getLogger("localbus")


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m localbus", description="Local Azure Service Bus–compatible broker.")
    parser.add_argument("--config", help="JSON config file (default: the packaged config with 'orders' and 'order-status')")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"AMQP port (default {DEFAULT_PORT}; 0 picks a free port)")
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help=f"HTTP stats port (default {DEFAULT_HTTP_PORT}; 0 picks a free port)")
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--data-dir", default=".local/localbus", help="directory of the SQLite store (default .local/localbus)")
    store.add_argument("--in-memory", action="store_true", help="keep nothing on disk")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        broker = Broker(args.config, host=args.host, port=args.port, http_port=args.http_port,
                        data_dir=None if args.in_memory else args.data_dir, in_memory=args.in_memory)
        broker.start()
    except ConfigError as exc:
        log.error(f"invalid config: {exc}", extra={"event": "config-error"})
        return 2
    except DataDirInUse as exc:
        log.error(str(exc), extra={"event": "data-dir-in-use"})
        return 1
    except OSError as exc:
        log.error(f"cannot listen: {exc}; pick another --port/--http-port or stop what uses them",
                  extra={"event": "listen-failed"})
        return 1
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("localbus ready", extra={
        "event": "ready", "connectionString": broker.connection_string, "amqpPort": broker.port,
        "httpPort": broker.http_port, "dataDir": None if args.in_memory else str(broker.data_dir),
        "queues": [q.name for q in broker.config.queues],
    })
    while not stop.wait(0.5):
        if broker._thread is not None and not broker._thread.is_alive():
            log.error("reactor thread ended unexpectedly", extra={"event": "crashed"})
            return 1
    log.info("shutting down", extra={"event": "stopping"})
    broker.stop()
    log.info("stopped", extra={"event": "stopped"})
    return 0


def _stats(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m localbus stats", description="Print per-queue counts of a running broker.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    parser.add_argument("--json", action="store_true", help="print the raw JSON")
    args = parser.parse_args(argv)
    url = f"http://{args.host}:{args.http_port}/queues"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.load(resp)
    except (urllib.error.URLError, OSError) as exc:
        print(f"cannot reach the broker's stats endpoint at {url}: {exc}. Is `python -m localbus` running with "
              f"--http-port {args.http_port}?", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    cols = ["queue", "active", "locked", "deferred", "scheduled", "deadLettered", "sessions", "receivers"]
    rows = [[name, q["active"], q["locked"], q["deferred"], q["scheduled"], q["deadLettered"], len(q["sessions"]), q["receivers"]]
            for name, q in data.items()]
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print("  ".join(str(c).ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "stats":
        return _stats(argv[1:])
    return _serve(argv)


if __name__ == "__main__":
    sys.exit(main())
