"""Child processes whose JSON log lines are kept in a log file and shown on the console as readable lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from local_servers.children import die_with_parent
from local_servers.ports import listening_socket, popen_with_listener
from service_platform.logs import console_line


class ChildProcess:
    """One service started with ``python -m <module>``; ``start`` again after ``kill`` restarts it.

    A child given a ``listener`` inherits that listening socket (``LISTEN_FD``) instead of binding a port
    itself; a restart binds the same port again for it. A child that binds its own ports reports them in a
    JSON log line with ``"event": "ready"``, kept in ``ready``.
    """

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], cwd: Path, log_dir: Path,
                 echo: IO[str] | None, listener: socket.socket | None = None) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.echo = echo
        self.process: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] | None = None
        self._ready_seen = threading.Event()
        self._listener = listener
        self.listen_port: int | None = None if listener is None else listener.getsockname()[1]
        self._colour = bool(echo is not None and getattr(echo, "isatty", lambda: False)())

    def start(self) -> None:
        listener = self._listener
        if listener is None and self.listen_port is not None:
            listener = listening_socket(self.listen_port)  # a restart: the port its clients know
        self._listener = None
        self.ready = None
        self._ready_seen.clear()
        options: dict[str, Any] = dict(
            cwd=self.cwd, text=True, bufsize=1, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the stack only; it stops children in order
            preexec_fn=die_with_parent,  # a killed supervisor leaves no child holding a port
        )
        command = [sys.executable, *self.args]
        self.process = (subprocess.Popen(command, env=self.env, **options) if listener is None
                        else popen_with_listener(command, listener, env=self.env, **options))
        threading.Thread(target=self._pump, args=(self.process,), daemon=True, name=f"log-{self.name}").start()

    def wait_ready(self, timeout: float) -> dict[str, Any] | None:
        """The child's ``"event": "ready"`` line, once it has written one (None: not within ``timeout``)."""
        self._ready_seen.wait(timeout)
        return self.ready

    def _note_ready(self, line: str) -> None:
        if '"ready"' not in line:
            return
        try:
            entry = json.loads(line)
        except ValueError:
            return
        if isinstance(entry, dict) and entry.get("event") == "ready":
            self.ready = entry
            self._ready_seen.set()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            for line in process.stdout:
                self._note_ready(line)
                log.write(line)
                log.flush()
                if self.echo is not None:
                    # The console gets readable lines; the log file keeps the JSON.
                    self.echo.write(console_line(line, colour=self._colour, default_service=self.name) + "\n")
                    self.echo.flush()
        process.stdout.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything, as when a node dies."""
        if self.running:
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not finished within ``timeout`` seconds."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 30) -> str:
        try:
            return "".join(self.log_path.read_text(encoding="utf-8").splitlines(keepends=True)[-lines:])
        except FileNotFoundError:
            return ""
