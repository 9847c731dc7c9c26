"""A private PostgreSQL cluster made with ``initdb`` and run with ``pg_ctl`` on a free port.

PostgreSQL takes no inherited socket, so the port is found free first; a cluster that lost it to another
program before binding it starts again on another one.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is owned by the
unprivileged ``postgres`` (or ``nobody``) account and the commands run through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from local_servers.ports import PortTaken, free_port, wait_until_listening


#: Starts on another free port after losing one to another program.
PORT_ATTEMPTS = 5


def _server_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} was not found: install PostgreSQL (`apt-get install -y postgresql`)")


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for account in ("postgres", "nobody"):
        try:
            pwd.getpwnam(account)
        except KeyError:
            continue
        return ["runuser", "-u", account, "--"]
    raise RuntimeError("running as root and no unprivileged account (postgres, nobody) exists for PostgreSQL")


@dataclass
class PostgresCluster:
    """A private cluster; ``stop``/``start`` take it down and bring it back on the same port with its data."""

    port: int
    datadir: Path
    run_as: list[str] = field(default_factory=list)
    server_options: str = ""
    log_path: Path | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """Create an empty database with a unique name and return its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    @property
    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def start(self) -> None:
        """Start the server and wait until it listens on its port; ``PortTaken`` if it could not bind it."""
        command = [*self.run_as, _server_bin("pg_ctl"), "-D", str(self.datadir), "-o",
                   f"-p {self.port} {self.server_options}", "-w", "start"]
        if self.log_path is not None:
            command[-2:-2] = ["-l", str(self.log_path)]
        offset = self._log_size()
        started = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        log = self.log_path.read_bytes()[offset:].decode(errors="replace") if self._log_size() else ""
        if started.returncode != 0:
            if "could not bind" in log or "Address already in use" in log:
                raise PortTaken(f"PostgreSQL could not listen on port {self.port}")
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()}\n{log[-2000:]}")
        wait_until_listening(self._postmaster_pid, self.port, exited=lambda: not self.running)

    def _log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path is not None and self.log_path.exists() else 0

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` cuts open connections and shuts down cleanly (an outage as clients see
        it); ``immediate`` is a crash, recovered from on the next ``start``."""
        subprocess.run([*self.run_as, _server_bin("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@contextmanager
def running_postgres(pick_port: Callable[[], int] = free_port) -> Iterator[PostgresCluster]:
    """A fresh cluster on a port ``pick_port`` finds free (another one if it was taken before the bind)."""
    prefix = _run_as()
    base = Path(tempfile.mkdtemp(prefix="pg-"))
    datadir = base / "data"
    if prefix:
        owner = pwd.getpwnam(prefix[2])
        os.chown(base, owner.pw_uid, owner.pw_gid)
    cluster = PostgresCluster(
        port=pick_port(), datadir=datadir, run_as=prefix, log_path=base / "log",
        server_options=f"-k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
    )
    try:
        subprocess.run(
            [*prefix, _server_bin("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                cluster.start()
                break
            except PortTaken:
                if attempt == PORT_ATTEMPTS:
                    raise
                cluster.port = pick_port()
        yield cluster
    finally:
        if cluster.running:
            subprocess.run([*prefix, _server_bin("pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)
