"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path


class PortBusy(RuntimeError):
    """A port the program must listen on is taken; the message names the process that holds it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    """Block until something accepts connections on ``host:port``, or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing is listening on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.02)


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def process_listening_on(port: int) -> str | None:
    """``"pid 1234 (command line)"`` of the process listening on ``port``, if this machine can tell."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    raw = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                    command = " ".join(raw.decode(errors="replace").split())
                    return f"pid {entry.name} ({command[:120]})"
        except OSError:
            continue
    return "another process (not visible to this user)"


def ensure_ports_free(ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
    """Raise ``PortBusy`` naming every port of ``ports`` (name → port) that something already holds."""
    busy = []
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                holder = process_listening_on(port) or "another process"
                busy.append(f"port {port} ({name}) is in use by {holder}")
    if busy:
        raise PortBusy("; ".join(busy) + ". Stop that process (an earlier run?) or free the port, then start again.")
