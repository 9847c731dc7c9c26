"""The broker embedded in another program: in-process (own thread) or a real child process that can be killed
and restarted. The local run (`local_stack`), the tests and the benchmarks start brokers through it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from .broker import Broker
from .config import BrokerConfig, load_config


def connection_string_for(port: int, config: BrokerConfig | dict | str | Path | None = None) -> str:
    """The connection string of a broker on ``port`` serving ``config`` (None: the default config)."""
    return load_config(config).connection_string(port)


class RunningBroker:
    """Handle on an in-process broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    @property
    def connection_string(self) -> str:
        return self.broker.connection_string

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def http_port(self) -> int:
        return self.broker.http_port

    @property
    def config(self) -> BrokerConfig:
        return self.broker.config

    def stats(self) -> dict[str, Any]:
        return self.broker.stats()


@contextlib.contextmanager
def running_broker(config: BrokerConfig | dict | str | Path | None = None, *, data_dir: str | Path | None = None,
                   in_memory: bool = False) -> Iterator[RunningBroker]:
    """An in-process broker on free ports; durable in ``data_dir`` (a temporary one if omitted) unless ``in_memory``."""
    with contextlib.ExitStack() as stack:
        if not in_memory and data_dir is None:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="localbus-"))
        broker = Broker(config, port=0, http_port=0, data_dir=data_dir, in_memory=in_memory)
        broker.start()
        stack.callback(broker.stop)
        yield RunningBroker(broker)


def ready_line(log_path: Path, offset: int = 0) -> dict[str, Any] | None:
    """The broker's ``"event": "ready"`` log line (it names the ports it bound) in ``log_path`` after ``offset``."""
    with open(log_path, "rb") as log:
        log.seek(offset)
        for raw in log:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == "ready":
                return entry
    return None


class BrokerProcess:
    """``python -m localbus`` in a subprocess. The first start binds port 0 (or the port given) and reads the
    ports from the broker's readiness line; restarts reuse them, so clients reconnect to the same address."""

    def __init__(self, config: BrokerConfig | dict | str | Path | None, data_dir: str | Path, port: int | None) -> None:
        self.data_dir = Path(data_dir)
        self.port: int = port or 0
        self.http_port: int = 0
        self._config_arg: str | None = None
        if isinstance(config, dict):
            path = self.data_dir / "localbus-config.json"
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(config))
            self._config_arg = str(path)
        elif isinstance(config, (str, Path)):
            self._config_arg = str(config)
        elif isinstance(config, BrokerConfig):
            raise TypeError("broker_process takes a dict or a path as config, not a BrokerConfig")
        self.config = load_config(config if not isinstance(config, dict) else config)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "localbus.log"

    @property
    def connection_string(self) -> str:
        return self.config.connection_string(self.port)

    def start(self, timeout: float = 15.0) -> None:
        """Start (or restart) on the same ports and data directory; return once it is ready."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the broker process is already running")
        cmd = [sys.executable, "-m", "localbus", "--port", str(self.port), "--http-port", str(self.http_port),
               "--data-dir", str(self.data_dir)]
        if self._config_arg:
            cmd += ["--config", self._config_arg]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the broker exited with {self.proc.returncode}; see {self.log_path}")
            ready = ready_line(self.log_path, offset)
            if ready is not None:
                self.port, self.http_port = int(ready["amqpPort"]), int(ready["httpPort"])
                return
            time.sleep(0.02)
        raise TimeoutError(f"the broker did not become ready within {timeout} s; see {self.log_path}")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/queues", timeout=5) as resp:
            return json.load(resp)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@contextlib.contextmanager
def broker_process(config: dict | str | Path | None = None, *, data_dir: str | Path, port: int | None = None
                   ) -> Iterator[BrokerProcess]:
    """A real ``python -m localbus`` subprocess; killed at exit if still running."""
    proc = BrokerProcess(config, data_dir, port)
    proc.start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.terminate()
