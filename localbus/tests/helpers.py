"""Helpers shared by the conformance tests."""

from __future__ import annotations

import time


def receive_n(receiver, n: int, timeout: float = 10.0) -> list:
    """Receive until ``n`` messages arrived or ``timeout`` passed."""
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(receiver.receive_messages(max_message_count=n - len(out), max_wait_time=1))
    return out
