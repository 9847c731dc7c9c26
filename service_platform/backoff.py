"""Growing pauses between attempts at something that fails for a while (a broker, Redis, SQL)."""

from __future__ import annotations

import random


def exponential_delay(attempt: int, *, base: float, cap: float) -> float:
    """``base * 2**attempt``, at most ``cap``: the pause before retry number ``attempt`` (0 for the first)."""
    return min(cap, base * 2 ** max(0, attempt))


class Backoff:
    """Pauses that double from ``initial`` up to ``maximum``, with ±``jitter`` so that many clients that lost
    the same server do not all come back in the same instant. ``reset()`` once an attempt succeeds."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, *, jitter: float = 0.2) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._attempt = 0

    def next_delay(self) -> float:
        delay = exponential_delay(self._attempt, base=self.initial, cap=self.maximum)
        self._attempt += 1
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self._attempt = 0
