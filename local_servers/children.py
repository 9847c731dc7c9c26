"""Child processes that never outlive the program that started them.

``scripts/run``'s supervisor, a test run or a benchmark may be killed with SIGKILL; its children must not
keep running and holding ports, or the next run fails on a busy port. Linux's ``PR_SET_PDEATHSIG`` has the
kernel kill a child when the thread that started it ends, so children are started from the main thread
(where the supervisor runs) with it set.
"""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for ``subprocess.Popen``: SIGKILL this child when its parent goes away."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
