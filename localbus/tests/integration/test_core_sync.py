"""Core conformance through the synchronous SDK: send, receive, settle, DLQ, sessions, duplicates."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusError,
    ServiceBusQuotaExceededError,
    SessionCannotBeLockedError,
)

from localbus.tests.helpers import receive_n


def _text(value):
    # The SDK hands AMQP strings in application properties back as bytes.
    return value.decode() if isinstance(value, bytes) else value


def test_every_message_property_round_trips(client):
    sent = ServiceBusMessage(
        b'{"x": 1}',
        message_id="mid-1",
        correlation_id="corr-1",
        subject="subj",
        content_type="application/json",
        to="someone",
        reply_to="replies",
        time_to_live=dt.timedelta(minutes=5),
        application_properties={"schemaVersion": 1, "traceparent": "00-abc-def-01", "flag": True, "ratio": 0.5},
    )
    with client.get_queue_sender("plain") as sender:
        sender.send_messages(sent)
    with client.get_queue_receiver("plain", max_wait_time=5) as receiver:
        [got] = receive_n(receiver, 1)
        assert b"".join(got.body) == b'{"x": 1}'
        assert got.message_id == "mid-1"
        assert got.correlation_id == "corr-1"
        assert got.subject == "subj"
        assert got.content_type == "application/json"
        assert got.to == "someone"
        assert got.reply_to == "replies"
        assert got.time_to_live == dt.timedelta(minutes=5)
        props = {_text(k): _text(v) for k, v in got.application_properties.items()}
        assert props == {"schemaVersion": 1, "traceparent": "00-abc-def-01", "flag": True, "ratio": 0.5}
        assert got.delivery_count == 0
        assert got.sequence_number >= 1
        assert got.enqueued_time_utc is not None
        assert got.locked_until_utc > dt.datetime.now(dt.timezone.utc)
        receiver.complete_message(got)


def test_large_message_spanning_many_frames_round_trips(client):
    body = bytes(range(256)) * 900  # 230 kB: under the 256 kB default, over many AMQP frames
    with client.get_queue_sender("order-status") as sender:
        sender.send_messages(ServiceBusMessage(body, message_id="big"))
    with client.get_queue_receiver("order-status", max_wait_time=5) as receiver:
        [got] = receive_n(receiver, 1)
        assert got.message_id == "big"
        assert b"".join(got.body) == body
        receiver.complete_message(got)


def test_batch_send_and_prefetch_receive_in_order(client):
    with client.get_queue_sender("plain") as sender:
        sender.send_messages([ServiceBusMessage(f"list-{i}") for i in range(20)])
        batch = sender.create_message_batch()
        for i in range(20):
            batch.add_message(ServiceBusMessage(f"batch-{i}"))
        sender.send_messages(batch)
    with client.get_queue_receiver("plain", max_wait_time=5, prefetch_count=50) as receiver:
        got = receive_n(receiver, 40)
        assert [str(m) for m in got] == [f"list-{i}" for i in range(20)] + [f"batch-{i}" for i in range(20)]
        seqs = [m.sequence_number for m in got]
        assert seqs == sorted(seqs)
        for m in got:
            receiver.complete_message(m)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []


def test_abandon_redelivers_with_higher_delivery_count(client):
    with client.get_queue_sender("settle") as sender:
        sender.send_messages(ServiceBusMessage("again", message_id="abandon-me"))
    with client.get_queue_receiver("settle", max_wait_time=5) as receiver:
        [first] = receive_n(receiver, 1)
        receiver.abandon_message(first)
        [second] = receive_n(receiver, 1)
        assert second.message_id == "abandon-me"
        assert second.delivery_count == first.delivery_count + 1
        assert second.sequence_number == first.sequence_number
        receiver.complete_message(second)


def test_dead_letter_with_reason_is_readable_on_the_dlq(client):
    with client.get_queue_sender("settle") as sender:
        sender.send_messages(ServiceBusMessage("poison", message_id="dl-1", application_properties={"k": "v"}))
    with client.get_queue_receiver("settle", max_wait_time=5) as receiver:
        [m] = receive_n(receiver, 1)
        receiver.dead_letter_message(m, reason="BadInput", error_description="quantity must be positive")
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
    with client.get_queue_receiver("settle", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5) as dlq:
        [dead] = receive_n(dlq, 1)
        assert dead.message_id == "dl-1"
        assert str(dead) == "poison"
        assert dead.dead_letter_reason == "BadInput"
        assert dead.dead_letter_error_description == "quantity must be positive"
        assert dead.dead_letter_source == "settle"
        dlq.complete_message(dead)


def test_duplicate_message_id_is_dropped_within_the_window(client):
    with client.get_queue_sender("dedup") as sender:
        sender.send_messages(ServiceBusMessage("one", message_id="same"))
        sender.send_messages(ServiceBusMessage("two", message_id="same"))
        sender.send_messages([ServiceBusMessage("three", message_id="same"), ServiceBusMessage("other", message_id="other")])
    with client.get_queue_receiver("dedup", max_wait_time=5) as receiver:
        got = receive_n(receiver, 3, timeout=3)
        assert [str(m) for m in got] == ["one", "other"]
        for m in got:
            receiver.complete_message(m)


def test_named_session_is_fifo_and_exclusive(client):
    sid = f"customer-{uuid.uuid4()}"
    with client.get_queue_sender("sess") as sender:
        sender.send_messages([ServiceBusMessage(f"s{i}", session_id=sid) for i in range(5)])
        sender.send_messages(ServiceBusMessage("other", session_id="someone-else"))
    with client.get_queue_receiver("sess", session_id=sid, max_wait_time=5) as receiver:
        assert receiver.session.session_id == sid
        assert receiver.session.locked_until_utc > dt.datetime.now(dt.timezone.utc)
        got = receive_n(receiver, 5)
        assert [str(m) for m in got] == [f"s{i}" for i in range(5)]
        assert all(m.session_id == sid for m in got)
        with pytest.raises(SessionCannotBeLockedError):
            with client.get_queue_receiver("sess", session_id=sid, max_wait_time=2) as second:
                second.receive_messages(max_wait_time=1)
        receiver.abandon_message(got[0])
        [again] = receive_n(receiver, 1)
        assert str(again) == "s0"
        for m in [again, *got[1:]]:
            receiver.complete_message(m)
    with client.get_queue_receiver("sess", session_id="someone-else", max_wait_time=5) as receiver:
        [m] = receive_n(receiver, 1)
        receiver.complete_message(m)


def test_next_available_session_picks_a_session_with_messages(client):
    with client.get_queue_sender("sess-next") as sender:
        sender.send_messages(ServiceBusMessage("a1", session_id="A"))
        sender.send_messages(ServiceBusMessage("b1", session_id="B"))
    seen = set()
    for _ in range(2):
        with client.get_queue_receiver("sess-next", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as receiver:
            sid = receiver.session.session_id
            [m] = receive_n(receiver, 1)
            assert m.session_id == sid
            receiver.complete_message(m)
            seen.add(sid)
    assert seen == {"A", "B"}
    with pytest.raises(OperationTimeoutError):
        with client.get_queue_receiver("sess-next", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver:
            receiver.receive_messages(max_wait_time=1)


def test_sessionful_queue_refuses_messages_without_session_id(client):
    with client.get_queue_sender("orders") as sender:
        with pytest.raises(ServiceBusError):
            sender.send_messages(ServiceBusMessage("no session"))


def test_unknown_queue_raises_not_found(client):
    with pytest.raises(MessagingEntityNotFoundError):
        with client.get_queue_sender("no-such-queue") as sender:
            sender.send_messages(ServiceBusMessage("x"))


def test_over_size_message_raises_size_error(client):
    with client.get_queue_sender("small") as sender:
        with pytest.raises(MessageSizeExceededError):
            sender.send_messages(ServiceBusMessage(b"x" * 10_000))
        sender.send_messages(ServiceBusMessage(b"x" * 100))
    with client.get_queue_receiver("small", max_wait_time=5) as receiver:
        [m] = receive_n(receiver, 1)
        receiver.complete_message(m)


def test_full_queue_raises_quota_exceeded(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string, retry_total=0) as c:
        with c.get_queue_sender("tiny") as sender:
            for _ in range(5):
                sender.send_messages(ServiceBusMessage(b"x" * 200_000))
            with pytest.raises(ServiceBusQuotaExceededError, match="is full"):
                sender.send_messages(ServiceBusMessage(b"x" * 200_000))
    assert broker.stats()["tiny"]["active"] == 5


def test_wrong_key_raises_authentication_error(broker):
    bad = broker.connection_string.replace(broker.config.key, "d3Jvbmcta2V5")
    with ServiceBusClient.from_connection_string(bad, retry_total=0) as c:
        with pytest.raises(ServiceBusAuthenticationError):
            with c.get_queue_sender("plain") as sender:
                sender.send_messages(ServiceBusMessage("x"))
    bad_name = broker.connection_string.replace("SharedAccessKeyName=RootManageSharedAccessKey", "SharedAccessKeyName=nobody")
    with ServiceBusClient.from_connection_string(bad_name, retry_total=0) as c:
        with pytest.raises(ServiceBusAuthenticationError):
            with c.get_queue_sender("plain") as sender:
                sender.send_messages(ServiceBusMessage("x"))


def test_stats_show_counts_per_queue(broker, client):
    with client.get_queue_sender("order-status") as sender:
        sender.send_messages([ServiceBusMessage("s1"), ServiceBusMessage("s2")])
    stats = broker.stats()
    assert stats["order-status"]["active"] == 2
    assert stats["orders"]["requiresSession"] is True
    with client.get_queue_receiver("order-status", max_wait_time=5) as receiver:
        for m in receive_n(receiver, 2):
            receiver.complete_message(m)
    assert broker.stats()["order-status"]["active"] == 0


def test_waiting_next_available_receiver_gets_a_session_that_arrives_later(client):
    import threading

    got: dict = {}

    def wait_for_session() -> None:
        with client.get_queue_receiver("sess-next", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=10) as receiver:
            got["session"] = receiver.session.session_id
            [m] = receive_n(receiver, 1)
            got["body"] = str(m)
            receiver.complete_message(m)

    waiter = threading.Thread(target=wait_for_session)
    waiter.start()
    time.sleep(1.5)  # the receiver's attach is now held by the broker: no session has messages
    assert "session" not in got
    with client.get_queue_sender("sess-next") as sender:
        sender.send_messages(ServiceBusMessage("late", session_id="late-comer"))
    waiter.join(20)
    assert got == {"session": "late-comer", "body": "late"}
