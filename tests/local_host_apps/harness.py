"""Runs ``python -m local_functions_host`` on a copy of a sample app, as a real subprocess.

The host binds port 0 and the harness reads the port from its readiness line (no pick-then-bind race); a
restart reuses that port, so clients reconnect to the same address."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent
READY_MARKER = "Local Functions host ready on "


def copy_app(name: str, destination: Path, values: Mapping[str, str] | None = None) -> Path:
    """Copy sample app ``name`` to ``destination`` and write its local.settings.json (git-ignored)."""
    target = destination / name
    shutil.copytree(APPS / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    settings = {
        "IsEncrypted": False,
        "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", "PYTHON_SCRIPT_FILE_NAME": "functions_entry.py", **(values or {})},
    }
    (target / "local.settings.json").write_text(json.dumps(settings, indent=2))
    return target


class HostProcess:
    """One local host process; ``start()`` returns once it printed its readiness line."""

    def __init__(
        self,
        script_root: Path,
        *,
        args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.script_root = script_root
        self.port = port or 0  # 0 until the first start reports the port it bound
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.stdout_lines: list[str] = []
        self.stderr_path = script_root / f"host-{uuid.uuid4().hex[:8]}.log"
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._pump_thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> HostProcess:
        env = {k: v for k, v in os.environ.items() if not k.lower().startswith("azurefunctionsjobhost__")}
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        stderr = open(self.stderr_path, "a", encoding="utf-8")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "local_functions_host", "--script-root", str(self.script_root),
                 "--port", str(self.port), *self.args],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )
        finally:
            stderr.close()
        self._lines = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, args=(self.proc, self._lines), daemon=True)
        self._pump_thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                self._release()
                raise RuntimeError(f"the local host exited with {code}:\n{self.stderr_text()}")
            if line.startswith(READY_MARKER):
                self.port = int(line.removeprefix(READY_MARKER).split()[0].rsplit(":", 1)[1])
                return self
        raise TimeoutError(f"the local host printed no readiness line in {timeout}s:\n{self.stderr_text()}")

    def _pump(self, proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise
        finally:
            self._release()

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._release()

    def _release(self) -> None:
        if self._pump_thread is not None:
            self._pump_thread.join(5)
        if self.proc is not None and self.proc.stdout is not None and self._pump_thread is not None \
                and not self._pump_thread.is_alive():
            self.proc.stdout.close()

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8") if self.stderr_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """Every stderr line, parsed as JSON (a line that is not JSON fails the test)."""
        return [json.loads(line) for line in self.stderr_text().splitlines() if line.strip()]

    def __enter__(self) -> HostProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        else:
            self._release()
