"""TCP ports on the loopback interface: sockets bound for a child to inherit, servers that cannot inherit one
checked to hold their port, and ports nothing listens on.

A port found free and released before a child binds it can be taken by another program in between. So the
parent binds the listening socket itself (port 0 picks one) and hands it over (``listening_socket``,
``LISTEN_FD``); a server that only takes a port number (redis-server, PostgreSQL) is checked to be the one
listening on it (``wait_until_listening``) and started again on another port when it lost the race.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from service_platform.inherited_socket import LISTEN_FD



class PortBusy(RuntimeError):
    """A port the program must listen on is taken; the message names the process that holds it."""


class PortTaken(RuntimeError):
    """The server exited at start, or another process listens on its port (it lost a race for it)."""


def listening_socket(port: int = 0, host: str = "127.0.0.1", backlog: int = 4096) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port) that a child process can inherit."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        holder = process_listening_on(port) or "another process"
        raise PortBusy(f"port {port} is in use by {holder} ({error.strerror}). Stop that process (an earlier "
                       "run?) or free the port, then start again.") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def popen_with_listener(command: list[str], listener: socket.socket, *, env: Mapping[str, str], **popen: object
                        ) -> subprocess.Popen:
    """Start ``command`` with ``listener`` inherited and named in ``LISTEN_FD``, then close the parent's copy:
    the child's is the only one, so the port closes when the child dies."""
    try:
        return subprocess.Popen(command, env={**env, LISTEN_FD: str(listener.fileno())},  # type: ignore[call-overload]
                                pass_fds=(listener.fileno(),), **popen)
    finally:
        listener.close()


def popen_listening(command: list[str], *, env: Mapping[str, str], port: int = 0, **popen: object
                    ) -> tuple[subprocess.Popen, int]:
    """``popen_with_listener`` on a new listening socket on ``port`` (0: a free one); returns the process and
    the port."""
    listener = listening_socket(port)
    bound = listener.getsockname()[1]
    return popen_with_listener(command, listener, env=env, **popen), bound


#: No proxy from the environment: these servers are on this machine's loopback interface.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Block until ``url`` answers (any status) or raise: ``RuntimeError`` if ``process`` exits first,
    ``TimeoutError`` after ``timeout`` seconds. A handed-over socket accepts before its server runs, so only
    an answer says it serves."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {process.returncode} at start")
        try:
            with DIRECT.open(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.05)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now: for a client that must find nothing there.
    A server started on it may lose it to another program first: see ``listening_socket``."""
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


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening socket on ``port``."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return False
    try:
        return any(os.readlink(fd) in wanted for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def wait_until_listening(pid: Callable[[], int | None], port: int, *, exited: Callable[[], bool],
                         timeout: float = 15.0) -> None:
    """Block until the process ``pid()`` names listens on ``port``. Raise ``PortTaken`` if it exits first (a
    server that cannot bind its port exits), ``TimeoutError`` if neither happens within ``timeout`` seconds.
    Unlike ``wait_for_port``, another program answering on that port does not count."""
    deadline = time.monotonic() + timeout
    while True:
        current = pid()
        if current is not None and listens_on(current, port):
            return
        if exited():
            raise PortTaken(f"the server meant for port {port} exited at start")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing of ours listens on 127.0.0.1:{port} after {timeout:.0f}s")
        time.sleep(0.02)


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
