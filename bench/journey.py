"""An order's whole journey as its customer sees it: POST → 202 → the terminal status on the WebSocket.

The pipeline benchmark's journey phase places orders open loop (each timed from when it was due) and follows
each one as the order page does: with the 202's ``notifyUrl``, one socket per order, on the WebSocket service
of the same stack. It measures intake, processing and push together, where the other phases measure them apart;
the order row's commit time from the same pass is the reference each push is compared with.

An order's terminal status reaches its socket in one of two ways: pushed (the order was committed after the
socket had subscribed, so the status event travelled from the host through the queue to the service), or read
as the current status while subscribing (it was committed first). Both are what a customer sees; the table says
how many were pushed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from bench.measure import percentile

TERMINAL = {"Completed", "Rejected", "Failed"}


async def follow(order: dict[str, Any], until: float) -> None:
    """Subscribe with ``order["notifyUrl"]`` and wait for a terminal status, until the monotonic time ``until``.

    Records wall-clock times on ``order``: ``subscribed`` (the socket opened), ``terminal`` (the terminal frame
    arrived) and its ``status``; or ``error`` when the socket failed or no terminal status came in time."""
    from websockets.asyncio.client import connect

    wall = time.time() - time.monotonic()
    try:
        async with asyncio.timeout(max(0.0, until - time.monotonic())):
            async with connect(order["notifyUrl"], proxy=None, open_timeout=None) as socket:
                order["subscribed"] = time.monotonic() + wall
                async for message in socket:
                    frame = json.loads(message)
                    if frame.get("type") == "status" and frame.get("status") in TERMINAL:
                        order["terminal"], order["status"] = time.monotonic() + wall, frame["status"]
                        return
                order["error"] = "the socket closed before a terminal status"
    except TimeoutError:
        order["error"] = "no terminal status in time"
    except Exception as error:  # noqa: BLE001 - any refusal or drop is counted, never raised
        order["error"] = f"{type(error).__name__}: {error}"[:200]


@dataclass
class JourneyResult:
    offered_rate: float
    measured: int  # orders accepted after the warm-up
    achieved_rate: float
    accepted_p50_ms: float  # due → 202
    accepted_p99_ms: float
    committed_p50_ms: float  # due → order row committed (the reference)
    committed_p99_ms: float
    seen_p50_ms: float  # due → terminal status on the customer's socket
    seen_p99_ms: float
    seen_max_ms: float
    after_commit_p50_ms: float  # terminal frame − commit, for the pushed orders
    after_commit_p99_ms: float
    delivered: int  # measured orders whose terminal status reached their socket
    pushed: int  # of those, committed after the socket subscribed
    failures: int  # refused at intake, or no terminal frame
    errors: list[str]
    host_cpu_us: float = float("nan")
    broker_cpu_us: float = float("nan")
    websocket_cpu_us: float = float("nan")

    @property
    def nothing_lost(self) -> bool:
        return self.failures == 0 and self.delivered == self.measured


def summarize(offered_rate: float, sent: dict[str, Any], commits: dict[str, float]) -> JourneyResult:
    """``sent``: the open-loop sender's output (its orders carry ``due``, ``accepted``, and from ``follow``
    ``subscribed``/``terminal`` or ``error``); ``commits``: correlationId → wall-clock commit time of its row."""
    measured = [order for order in sent["orders"] if not order["warmup"]]
    delivered = [order for order in measured if "terminal" in order]
    committed = [order for order in measured if order["correlationId"] in commits]
    pushed = [order for order in delivered if order["correlationId"] in commits
              and commits[order["correlationId"]] >= order["subscribed"]]
    accepted = [(order["accepted"] - order["due"]) * 1000 for order in measured]
    seen = [(order["terminal"] - order["due"]) * 1000 for order in delivered]
    to_commit = [(commits[order["correlationId"]] - order["due"]) * 1000 for order in committed]
    after_commit = [(order["terminal"] - commits[order["correlationId"]]) * 1000 for order in pushed]
    errors = sorted({order["error"] for order in measured if "error" in order})
    return JourneyResult(
        offered_rate=offered_rate, measured=len(measured), achieved_rate=len(measured) / sent["seconds"],
        accepted_p50_ms=percentile(accepted, 0.5), accepted_p99_ms=percentile(accepted, 0.99),
        committed_p50_ms=percentile(to_commit, 0.5), committed_p99_ms=percentile(to_commit, 0.99),
        seen_p50_ms=percentile(seen, 0.5), seen_p99_ms=percentile(seen, 0.99),
        seen_max_ms=max(seen, default=float("nan")),
        after_commit_p50_ms=percentile(after_commit, 0.5), after_commit_p99_ms=percentile(after_commit, 0.99),
        delivered=len(delivered), pushed=len(pushed),
        failures=len(sent["failures"]) + len(measured) - len(delivered), errors=[*sent["failures"][:3], *errors[:3]])
