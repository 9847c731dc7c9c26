"""A listening socket handed over by the process that started this one.

The local run and the tests bind each service's port themselves (port 0 picks a free one, so no other
program can take it between a check and the bind) and pass the socket down: its descriptor number is in
``LISTEN_FD``. In Kubernetes nothing is handed over and each service binds its configured port.
"""

from __future__ import annotations

import os
import socket

LISTEN_FD = "LISTEN_FD"


def inherited_listener() -> socket.socket | None:
    """The listening socket named by ``LISTEN_FD``, if this process was given one (taken once)."""
    fd = os.environ.pop(LISTEN_FD, None)  # not passed on to this process's own children
    if not fd:
        return None
    sock = socket.socket(fileno=int(fd))
    sock.set_inheritable(False)
    return sock
