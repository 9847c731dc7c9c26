"""The journey phase follows an order on its socket as the order page does, and counts what its customer saw.

``follow`` runs against a real ``websockets`` server on a free port that answers as the WebSocket service does
(the current status, then events); the service itself runs in the benchmark, and its own tests cover it.
"""

import asyncio
import json
import time

from websockets.asyncio.server import serve

from bench.journey import follow, summarize


def order(cid: str, *, due: float, accepted: float, subscribed: float | None = None, terminal: float | None = None,
          warmup: bool = False, error: str | None = None) -> dict:
    entry = {"correlationId": cid, "warmup": warmup, "due": due, "accepted": accepted}
    if subscribed is not None:
        entry["subscribed"] = subscribed
    if terminal is not None:
        entry["terminal"], entry["status"] = terminal, "Completed"
    if error is not None:
        entry["error"] = error
    return entry


def test_an_order_committed_after_its_socket_subscribed_counts_as_pushed_and_one_committed_before_does_not():
    sent = {"seconds": 2.0, "failures": [], "orders": [
        order("pushed", due=100.0, accepted=100.01, subscribed=100.02, terminal=100.10),
        order("read-on-subscribe", due=101.0, accepted=101.01, subscribed=101.30, terminal=101.31),
    ]}
    result = summarize(1.0, sent, {"pushed": 100.08, "read-on-subscribe": 101.05})
    assert (result.measured, result.delivered, result.pushed, result.failures) == (2, 2, 1, 0)
    assert result.nothing_lost
    assert round(result.after_commit_p50_ms) == 20  # the pushed one's frame came 20 ms after its commit
    assert round(result.seen_p99_ms) == 310  # due → on the socket, the slower of the two


def test_an_order_whose_terminal_status_never_reached_its_socket_is_a_failure_and_warm_up_orders_do_not_count():
    sent = {"seconds": 1.0, "failures": ["429 b'too many'"], "orders": [
        order("warm", due=99.0, accepted=99.5, warmup=True, error="no terminal status in time"),
        order("lost", due=100.0, accepted=100.01, subscribed=100.02, error="no terminal status in time"),
        order("fine", due=100.5, accepted=100.51, subscribed=100.52, terminal=100.6),
    ]}
    result = summarize(2.0, sent, {"lost": 100.05, "fine": 100.55, "warm": 99.7})
    assert (result.measured, result.delivered, result.failures) == (2, 1, 2)  # the refused one and the lost one
    assert not result.nothing_lost
    assert "no terminal status in time" in result.errors and "429 b'too many'" in result.errors


def run_follow(frames: list[dict], *, close_early: bool = False, until_seconds: float = 5.0) -> dict:
    async def main() -> dict:
        async def handler(socket) -> None:
            for frame in frames:
                await socket.send(json.dumps(frame))
            if not close_early:
                await socket.wait_closed()  # the follower hangs up

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            entry = {"notifyUrl": f"ws://127.0.0.1:{port}/ws?correlationId=c&token=t"}
            await follow(entry, time.monotonic() + until_seconds)
            return entry

    return asyncio.run(main())


def test_follow_records_when_the_terminal_status_arrived_after_the_frames_before_it():
    before = time.time()
    entry = run_follow([{"type": "status", "status": "Accepted"}, {"type": "error", "message": "x"},
                        {"type": "status", "status": "Rejected"}])
    assert entry["status"] == "Rejected" and "error" not in entry
    assert before <= entry["subscribed"] <= entry["terminal"] <= time.time()


def test_follow_says_why_when_no_terminal_status_came():
    closed = run_follow([{"type": "status", "status": "Accepted"}], close_early=True)
    assert closed["error"] == "the socket closed before a terminal status" and "terminal" not in closed
    waited = run_follow([{"type": "status", "status": "Accepted"}], until_seconds=0.3)
    assert waited["error"] == "no terminal status in time"
