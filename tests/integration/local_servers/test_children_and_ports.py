"""Children die with their supervisor; a busy port is named with the process that holds it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from local_servers.ports import PortBusy, ensure_ports_free, free_port

ROOT = Path(__file__).resolve().parents[3]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (nobody reaps it once its parent is gone... until init does).
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_children_of_a_killed_supervisor_do_not_keep_running(tmp_path):
    """The supervisor (a real process running ``ChildProcess``, as ``scripts/run`` does) is SIGKILLed."""
    supervisor = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from local_stack.processes import ChildProcess
        child = ChildProcess("sleeper", ["-c", "import time; time.sleep(120)"], env={{}}, cwd=Path("."),
                             log_dir=Path({str(tmp_path)!r}), echo=None)
        child.start()
        print(child.process.pid, flush=True)
        time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", supervisor], stdout=subprocess.PIPE, text=True)
    child_pid = int(process.stdout.readline())
    assert _alive(child_pid)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    process.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid), "the child outlived its supervisor"


def test_a_busy_port_is_a_clear_error_naming_the_port_and_the_process():
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        with pytest.raises(PortBusy) as raised:
            ensure_ports_free({"Functions host": port, "broker": free_port()})
    message = str(raised.value)
    assert f"port {port} (Functions host) is in use by pid {os.getpid()}" in message
    assert "broker" not in message and "Stop that process" in message


SERVE_INHERITED = textwrap.dedent("""
    import socket
    from service_platform.inherited_socket import inherited_listener
    listener = inherited_listener()
    while True:
        connection, _ = listener.accept()
        connection.sendall(b"pid %d" % __import__("os").getpid())
        connection.close()
""")


def _ask(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        return connection.recv(100)


def test_a_child_serves_the_socket_it_was_handed_and_a_restart_binds_the_same_port(tmp_path):
    """The port is bound before the child starts (so its URL can go to the others first); once the child dies
    the port is closed (clients are refused, as with a crashed server), and a restart serves it again."""
    from local_servers.ports import listening_socket
    from local_stack.processes import ChildProcess

    listener = listening_socket(0)
    port = listener.getsockname()[1]
    child = ChildProcess("inheritor", ["-c", SERVE_INHERITED], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         cwd=ROOT, log_dir=tmp_path, echo=None, listener=listener)
    child.start()
    try:
        assert listener.fileno() == -1, "the parent keeps no copy of the socket"
        assert _ask(port) == b"pid %d" % child.process.pid
        child.kill()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        child.start()
        assert child.listen_port == port
        assert _ask(port) == b"pid %d" % child.process.pid
    finally:
        child.kill()


def test_another_program_answering_on_the_port_is_not_taken_for_the_server(tmp_path):
    from local_servers.ports import wait_until_listening

    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            with pytest.raises(TimeoutError, match=f"nothing of ours listens on 127.0.0.1:{port}"):
                wait_until_listening(lambda: sleeper.pid, port, exited=lambda: sleeper.poll() is not None,
                                     timeout=0.5)
        finally:
            sleeper.kill()
            sleeper.wait()


def taken_then_free(taken_port: int) -> Callable[[], int]:
    """A port picker whose first answer is a port another socket holds, as when another program took it
    between the check and the server's bind; that race cannot be timed from outside, so it is staged."""
    answers = [taken_port]
    return lambda: answers.pop(0) if answers else free_port()


def test_redis_that_loses_its_port_to_another_program_starts_on_another_one(tmp_path):
    import redis

    from local_servers import redis_server
    from local_servers.ports import listens_on

    with socket.create_server(("127.0.0.1", 0)) as other:
        taken = other.getsockname()[1]
        server = redis_server.RedisServer(port=0, workdir=tmp_path, pick_port=taken_then_free(taken))
        server.start()
        try:
            assert server.port != taken
            assert listens_on(server.process.pid, server.port)
            assert redis.Redis.from_url(server.url).ping()
            server.stop()
            server.start()
            assert redis.Redis.from_url(server.url).ping(), "a restart keeps the port its clients know"
        finally:
            server.stop()


def test_redis_given_a_port_another_program_holds_says_so(tmp_path):
    from local_servers.ports import PortTaken
    from local_servers.redis_server import RedisServer

    with socket.create_server(("127.0.0.1", 0)) as other:
        taken = other.getsockname()[1]
        with pytest.raises(PortTaken, match=f"could not listen on port {taken}"):
            RedisServer(port=taken, workdir=tmp_path).start()


@pytest.mark.postgres
def test_postgres_that_loses_its_port_to_another_program_starts_on_another_one():
    import psycopg

    from local_servers import postgres_cluster

    with socket.create_server(("127.0.0.1", 0)) as other:
        taken = other.getsockname()[1]
        with postgres_cluster.running_postgres(pick_port=taken_then_free(taken)) as cluster:
            assert cluster.port != taken
            with psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres") as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
