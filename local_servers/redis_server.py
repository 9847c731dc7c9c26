"""A private ``redis-server`` process on a free port, with persistence off."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from local_servers.children import die_with_parent
from local_servers.ports import PortTaken, free_port, wait_until_listening

#: Starts on another free port after losing one to another program (redis-server takes no inherited socket).
PORT_ATTEMPTS = 5


@dataclass
class RedisServer:
    """A private Redis server. ``port`` 0 picks a free one at the first start; ``stop``/``start`` restart it
    on the same port."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    pick_port: Callable[[], int] = field(default=free_port, repr=False)  # for port 0: a port free right now

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed: run `apt-get install -y redis-server`")
        pick = self.port == 0
        for attempt in range(1, PORT_ATTEMPTS + 1):
            if pick:
                self.port = self.pick_port()
            self.process = subprocess.Popen(
                [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
            )
            process = self.process
            try:
                wait_until_listening(lambda: process.pid, self.port, exited=lambda: process.poll() is not None)
                return
            except PortTaken:
                if not pick or attempt == PORT_ATTEMPTS:
                    raise PortTaken(f"redis-server could not listen on port {self.port}; its log "
                                    f"({self.workdir / 'redis.log'}) says why") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="redis-") as workdir:
        server = RedisServer(port=0, workdir=Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.stop()
