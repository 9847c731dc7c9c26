"""The WebSocket service's pure core: frames, subscriptions, dedup, send-queue policy, routing decisions."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from websocket_service.core import (
    Disposition,
    FrameError,
    InvalidEvent,
    Outbox,
    RegistryEntry,
    SocketSubscriptions,
    StatusEvent,
    Subscribe,
    Unsubscribe,
    disposition_after_registry_failure,
    forward_targets,
    parse_client_frame,
)

CID = "0b6f8f53-7d0a-4c55-9a0e-7d7f3f0d2a11"


def event(status: str, cid: str = CID, **fields) -> StatusEvent:
    return StatusEvent(correlation_id=cid, status=status, **fields)


def test_core_imports_only_the_standard_library() -> None:
    code = ("import sys, websocket_service.core, websocket_service.notifier, websocket_service.ports;"
            "bad=[m for m in sys.modules if m.split('.')[0] in "
            "('starlette','redis','httpx','azure','uvicorn','websockets','pydantic')];print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "frame is not valid JSON"),
        ("[1, 2]", "frame must be a JSON object"),
        ('{"action": "dance", "correlationId": "%s"}' % CID, "'action' must be 'subscribe' or 'unsubscribe'"),
        ('{"action": "subscribe", "correlationId": "nope", "token": "t"}', "'correlationId' must be a UUID"),
        ('{"action": "subscribe", "correlationId": "%s"}' % CID, "'token' is required to subscribe"),
        (b"\x00\x01", "binary frames are not supported"),
        ('{"action": "unsubscribe", "correlationId": "%s", "pad": "%s"}' % (CID, "x" * 5000), "larger than"),
    ],
)
def test_bad_frames_are_refused_with_a_reason(frame: str | bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        parse_client_frame(frame)


def test_good_frames_become_commands() -> None:
    assert parse_client_frame(json.dumps({"action": "subscribe", "correlationId": CID, "token": "t"})) == Subscribe(CID, "t")
    assert parse_client_frame(json.dumps({"action": "unsubscribe", "correlationId": CID})) == Unsubscribe(CID)


def test_status_event_round_trips_to_a_frame_that_names_the_time_at() -> None:
    body = {"correlationId": CID, "status": "Completed", "orderId": 7, "total": "12.50", "currency": "EUR",
            "reason": None, "updatedAt": "2026-01-01T00:00:00Z", "attempt": 2}
    parsed = StatusEvent.from_json(json.dumps(body))
    assert parsed.to_mapping() == body
    frame = {k: v for k, v in body.items() if k != "updatedAt"} | {"at": "2026-01-01T00:00:00Z"}
    assert json.loads(parsed.to_frame()) == {"type": "status", **frame}


def test_the_trace_context_travels_with_forwards_but_never_to_clients() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced = StatusEvent.from_mapping({"correlationId": CID, "status": "Completed", "traceparent": traceparent})

    assert StatusEvent.from_mapping(traced.to_mapping()).traceparent == traceparent
    assert "traceparent" not in json.loads(traced.to_frame())
    assert traced == StatusEvent(CID, "Completed"), "the same status, whichever trace delivered it"
    with pytest.raises(InvalidEvent, match="traceparent"):
        StatusEvent.from_mapping({"correlationId": CID, "status": "Completed", "traceparent": 1})


def test_status_api_answer_and_event_share_one_shape() -> None:
    parsed = StatusEvent.from_mapping({"correlationId": CID, "status": "Accepted", "orderId": None, "total": None,
                                       "currency": "EUR", "reason": None, "updatedAt": "2026-01-01T00:00:00Z"})
    assert parsed.updated_at == "2026-01-01T00:00:00Z" and not parsed.terminal


@pytest.mark.parametrize("body", [
    "{", "[]", json.dumps({"correlationId": CID, "status": "Shipped"}),
    json.dumps({"correlationId": CID, "status": "Completed", "orderId": "7"}),
    json.dumps({"correlationId": CID, "status": "Completed", "orderId": True}),
    json.dumps({"correlationId": CID, "status": "Completed", "total": 12.5}),
    json.dumps({"correlationId": "x", "status": "Completed"}),
])
def test_malformed_events_are_refused(body: str) -> None:
    with pytest.raises(InvalidEvent):
        StatusEvent.from_json(body)


def test_subscriptions_drop_repeats_and_end_on_terminal_status() -> None:
    subs = SocketSubscriptions(limit=10)
    assert subs.add(CID) and not subs.add(CID)
    assert subs.admit(event("Accepted"))
    assert not subs.admit(event("Accepted")), "a repeated status must not reach the client twice"
    assert subs.admit(event("Completed"))
    assert CID not in subs, "a terminal status ends the subscription"
    assert not subs.admit(event("Completed")), "nothing follows a terminal status"
    assert not subs.admit(event("Accepted"))


def test_an_event_without_an_attempt_is_the_first_attempt() -> None:
    assert StatusEvent.from_mapping({"correlationId": CID, "status": "Failed"}).attempt == 1


def test_a_subscription_after_a_replay_follows_the_new_attempt_and_drops_the_old_ones() -> None:
    subs = SocketSubscriptions(limit=10)
    subs.add(CID)
    assert subs.admit(event("Failed"))  # attempt 1 ends the first subscription
    subs.add(CID)  # the client subscribes again after the replay
    assert subs.admit(event("Accepted", attempt=2))
    assert not subs.admit(event("Failed")), "a late event of attempt 1 must not end attempt 2's subscription"
    assert not subs.admit(event("Accepted", attempt=2))
    assert subs.admit(event("Completed", attempt=2)) and CID not in subs


def test_subscriptions_ignore_orders_not_followed_and_enforce_the_limit() -> None:
    subs = SocketSubscriptions(limit=1)
    subs.add(CID)
    other = str(uuid.uuid4())
    assert not subs.admit(event("Completed", cid=other))
    with pytest.raises(FrameError, match="at most 1 orders"):
        subs.add(other)
    assert subs.remove(CID) and not subs.remove(CID)
    assert subs.add(other)


def test_outbox_overflows_once_and_stays_overflowed() -> None:
    box = Outbox(limit=2)
    assert box.offer("a") and box.offer("b")
    assert not box.offer("c") and box.overflowed
    assert len(box) == 0, "an overflowed outbox frees what it held"
    assert not box.offer("d")


def test_outbox_drains_in_order() -> None:
    box = Outbox(limit=3)
    for frame in "xyz":
        box.offer(frame)
    assert [box.take(), box.take(), box.take(), box.take()] == ["x", "y", "z", None]


def test_forward_targets_skip_self_and_stale_entries() -> None:
    entries = [RegistryEntry("me", "http://a", 100.0), RegistryEntry("b", "http://b", 100.0),
               RegistryEntry("dead", "http://c", 10.0)]
    assert forward_targets(entries, "me", now=50.0) == [RegistryEntry("b", "http://b", 100.0)]


def test_registry_entry_encoding() -> None:
    entry = RegistryEntry("i-1", "http://10.0.0.1:8080", 123.5)
    assert RegistryEntry.decode("i-1", entry.encode()) == entry
    assert RegistryEntry.decode("i-1", "garbage") is None


def test_registry_failure_gives_the_event_back_a_few_times_then_drops_it() -> None:
    assert disposition_after_registry_failure(False, 0, 5) == Disposition.ABANDON
    assert disposition_after_registry_failure(False, 4, 5) == Disposition.COMPLETE
    assert disposition_after_registry_failure(True, 0, 5) == Disposition.COMPLETE

