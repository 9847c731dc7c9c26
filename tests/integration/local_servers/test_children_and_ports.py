"""Children die with their supervisor; a busy port is named with the process that holds it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
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
