"""A private PostgreSQL cluster made with ``initdb`` and run with ``pg_ctl`` on a free port.

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from local_servers.ports import free_port, wait_for_port


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
        """Start the server and wait until it accepts connections."""
        command = [*self.run_as, _server_bin("pg_ctl"), "-D", str(self.datadir), "-o", self.server_options, "-w",
                   "start"]
        if self.log_path is not None:
            command[-2:-2] = ["-l", str(self.log_path)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` cuts open connections and shuts down cleanly (an outage as clients see
        it); ``immediate`` is a crash, recovered from on the next ``start``."""
        subprocess.run([*self.run_as, _server_bin("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@contextmanager
def running_postgres() -> Iterator[PostgresCluster]:
    prefix = _run_as()
    base = Path(tempfile.mkdtemp(prefix="pg-"))
    datadir = base / "data"
    if prefix:
        owner = pwd.getpwnam(prefix[2])
        os.chown(base, owner.pw_uid, owner.pw_gid)
    port = free_port()
    cluster = PostgresCluster(
        port=port, datadir=datadir, run_as=prefix, log_path=base / "log",
        server_options=f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
    )
    try:
        subprocess.run(
            [*prefix, _server_bin("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        cluster.start()
        yield cluster
    finally:
        if cluster.running:
            subprocess.run([*prefix, _server_bin("pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)
