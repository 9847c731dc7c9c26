"""Keeping the garbage collector's full collections short in a long-running service.

CPython's full collection walks every container object the process holds. A service holds some 150,000 of
them before it handles anything (the Service Bus SDK, pydantic, OpenTelemetry, the worker library, the
app), and on 2 cores a full collection of those took 75-120 ms. Under load it runs every few seconds, and
every request or message waiting meanwhile waits those milliseconds too (docs/benchmarks.md has the
figures: with the freeze a full collection takes 2-4 ms, and the intake's p99 under load fell). Objects that live as long as the process never
become garbage, so :func:`freeze_long_lived_objects` moves those alive now into the collector's permanent
generation, which it no longer walks; objects made later are collected as before.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_long_lived_objects(reason: str) -> int:
    """Take every object alive now out of future collections; returns how many are frozen in all.

    Call it once the process has built what it keeps (clients, settings, the indexed app). Objects frozen
    are still freed when nothing refers to them any more; only reference cycles among them would stay,
    and what is alive at start-up holds few. Calling it again freezes what was built since.
    """
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%s: %d long-lived objects kept out of garbage collections", reason, frozen,
             extra={"frozenObjects": frozen})
    return frozen
