"""Locks, delivery counts, deferral, scheduling, TTL, peek and session state through the synchronous SDK."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import MessageLockLostError, MessageNotFoundError, SessionLockLostError

from localbus.embedded import running_broker
from localbus.tests.helpers import receive_n

CONFIG = {
    "queues": [
        {"name": "short-lock", "lockDuration": "PT2S", "maxDeliveryCount": 3},
        {"name": "max-two", "maxDeliveryCount": 2},
        {"name": "defer"},
        {"name": "sched"},
        {"name": "rad"},
        {"name": "peek"},
        {"name": "ttl-drop"},
        {"name": "ttl-dlq", "deadLetteringOnMessageExpiration": True, "defaultMessageTimeToLive": "PT1S"},
        {"name": "sess-lock", "requiresSession": True, "lockDuration": "PT3S"},
        {"name": "sess-state", "requiresSession": True},
        {"name": "renew", "lockDuration": "PT3S"},
    ]
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def broker():
    with running_broker(CONFIG, in_memory=True) as b:
        yield b


@pytest.fixture(scope="module")
def client(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string) as c:
        yield c


def test_expired_lock_redelivers_with_delivery_count_plus_one(client):
    with client.get_queue_sender("short-lock") as sender:
        sender.send_messages(ServiceBusMessage("slow", message_id="slow-1"))
    with client.get_queue_receiver("short-lock", max_wait_time=5) as receiver:
        [first] = receive_n(receiver, 1)
        assert first.delivery_count == 0
        time.sleep(2.3)
        [second] = receive_n(receiver, 1, timeout=5)
        assert second.message_id == "slow-1"
        assert second.delivery_count == 1
        assert second.lock_token != first.lock_token
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(first)
        receiver.complete_message(second)


def test_renew_message_lock_keeps_the_message(client):
    with client.get_queue_sender("renew") as sender:
        sender.send_messages(ServiceBusMessage("long job"))
    with client.get_queue_receiver("renew", max_wait_time=5) as receiver:
        [m] = receive_n(receiver, 1)
        before = m.locked_until_utc
        for _ in range(3):
            time.sleep(1.0)
            new_until = receiver.renew_message_lock(m)
        assert new_until > before
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
        receiver.complete_message(m)


def test_max_delivery_count_dead_letters(client):
    with client.get_queue_sender("max-two") as sender:
        sender.send_messages(ServiceBusMessage("poison", message_id="p-1"))
    with client.get_queue_receiver("max-two", max_wait_time=5) as receiver:
        for expected_count in range(2):
            [m] = receive_n(receiver, 1)
            assert m.delivery_count == expected_count
            receiver.abandon_message(m)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
    with client.get_queue_receiver("max-two", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5) as dlq:
        [dead] = receive_n(dlq, 1)
        assert dead.message_id == "p-1"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        dlq.complete_message(dead)


def test_defer_and_receive_deferred(client, broker):
    with client.get_queue_sender("defer") as sender:
        sender.send_messages([ServiceBusMessage("later"), ServiceBusMessage("now")])
    with client.get_queue_receiver("defer", max_wait_time=5) as receiver:
        first, second = receive_n(receiver, 2)
        receiver.defer_message(first)
        receiver.complete_message(second)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
        # Peek starts after the last received sequence number unless told where to start.
        [peeked] = receiver.peek_messages(max_message_count=5, sequence_number=first.sequence_number)
        assert peeked.sequence_number == first.sequence_number
        assert peeked.state == ServiceBusMessageState.DEFERRED
        [deferred] = receiver.receive_deferred_messages([first.sequence_number])
        assert str(deferred) == "later"
        assert deferred.locked_until_utc > utcnow()
        receiver.abandon_message(deferred)  # stays deferred
        [deferred] = receiver.receive_deferred_messages([first.sequence_number])
        receiver.complete_message(deferred)
        assert receiver.peek_messages(max_message_count=5, sequence_number=1) == []
    # The SDK retries this error; a client without retries shows it at once.
    with ServiceBusClient.from_connection_string(broker.connection_string, retry_total=0) as no_retry:
        with no_retry.get_queue_receiver("defer") as receiver:
            with pytest.raises(MessageNotFoundError):
                receiver.receive_deferred_messages([first.sequence_number])


def test_scheduled_send_and_cancel(client, broker):
    with client.get_queue_sender("sched") as sender:
        soon = utcnow() + dt.timedelta(seconds=5)
        [seq] = sender.schedule_messages(ServiceBusMessage("soon"), soon)
        [cancel_seq] = sender.schedule_messages(ServiceBusMessage("never"), soon)
        sender.cancel_scheduled_messages(cancel_seq)
        via_property = ServiceBusMessage("via property")
        via_property.scheduled_enqueue_time_utc = soon
        sender.send_messages(via_property)
    stats = broker.stats()["sched"]
    assert (stats["scheduled"], stats["active"]) == (2, 0)
    with client.get_queue_receiver("sched", max_wait_time=5) as receiver:
        got = receive_n(receiver, 2, timeout=10)
        assert utcnow() >= soon
        assert sorted(str(m) for m in got) == ["soon", "via property"]
        assert got[0].sequence_number == seq or got[1].sequence_number == seq
        for m in got:
            assert m.scheduled_enqueue_time_utc is not None
            receiver.complete_message(m)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=2) == []


def test_receive_and_delete_removes_on_delivery(client, broker):
    with client.get_queue_sender("rad") as sender:
        sender.send_messages([ServiceBusMessage(f"r{i}") for i in range(3)])
    with client.get_queue_receiver("rad", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=5) as receiver:
        got = receive_n(receiver, 3)
        assert [str(m) for m in got] == ["r0", "r1", "r2"]
    assert broker.stats()["rad"]["active"] == 0


def test_peek_does_not_lock(client):
    with client.get_queue_sender("peek") as sender:
        sender.send_messages([ServiceBusMessage(f"p{i}") for i in range(5)])
    with client.get_queue_receiver("peek", max_wait_time=5) as receiver:
        peeked = receiver.peek_messages(max_message_count=3)
        assert [str(m) for m in peeked] == ["p0", "p1", "p2"]
        more = receiver.peek_messages(max_message_count=10, sequence_number=peeked[-1].sequence_number + 1)
        assert [str(m) for m in more] == ["p3", "p4"]
        got = receive_n(receiver, 5)
        assert [str(m) for m in got] == [f"p{i}" for i in range(5)]
        for m in got:
            receiver.complete_message(m)


def test_ttl_expiry_drops_or_dead_letters(client, broker):
    with client.get_queue_sender("ttl-drop") as sender:
        sender.send_messages(ServiceBusMessage("short-lived", time_to_live=dt.timedelta(seconds=1)))
        sender.send_messages(ServiceBusMessage("long-lived"))
    with client.get_queue_sender("ttl-dlq") as sender:
        sender.send_messages(ServiceBusMessage("expires into DLQ"))
    time.sleep(1.5)
    with client.get_queue_receiver("ttl-drop", max_wait_time=5) as receiver:
        got = receive_n(receiver, 2, timeout=2)
        assert [str(m) for m in got] == ["long-lived"]
        receiver.complete_message(got[0])
    assert broker.stats()["ttl-drop"]["deadLettered"] == 0
    with client.get_queue_receiver("ttl-dlq", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5) as dlq:
        [dead] = receive_n(dlq, 1)
        assert str(dead) == "expires into DLQ"
        assert dead.dead_letter_reason == "TTLExpiredException"
        dlq.complete_message(dead)


def test_session_lock_renew_and_expiry(client):
    sid = f"s-{uuid.uuid4()}"
    with client.get_queue_sender("sess-lock") as sender:
        sender.send_messages([ServiceBusMessage(f"m{i}", session_id=sid) for i in range(2)])
    with client.get_queue_receiver("sess-lock", session_id=sid, max_wait_time=5) as receiver:
        [m0] = receive_n(receiver, 1)
        time.sleep(1.5)
        receiver.session.renew_lock()
        time.sleep(2.0)
        receiver.complete_message(m0)  # 3.5 s after the lock was taken: still locked thanks to the renewal
        [m1] = receive_n(receiver, 1)
        time.sleep(3.5)
        with pytest.raises(SessionLockLostError):
            receiver.complete_message(m1)
    # FIFO survives the lock loss: m1 comes back first, with a higher delivery count.
    with client.get_queue_receiver("sess-lock", session_id=sid, max_wait_time=5) as receiver:
        [again] = receive_n(receiver, 1)
        assert str(again) == "m1"
        assert again.delivery_count == 1
        receiver.complete_message(again)


def test_session_state_get_and_set(client):
    sid = f"s-{uuid.uuid4()}"
    with client.get_queue_sender("sess-state") as sender:
        sender.send_messages(ServiceBusMessage("x", session_id=sid))
    with client.get_queue_receiver("sess-state", session_id=sid, max_wait_time=5) as receiver:
        assert receiver.session.get_state() is None
        receiver.session.set_state(b"step-2")
        assert receiver.session.get_state() == b"step-2"
        [m] = receive_n(receiver, 1)
        receiver.complete_message(m)
    with client.get_queue_receiver("sess-state", session_id=sid, max_wait_time=5) as receiver:
        assert receiver.session.get_state() == b"step-2"
        receiver.session.set_state(None)


def test_idle_session_receiver_learns_its_lock_expired(client, broker):
    sid = f"s-{uuid.uuid4()}"
    with client.get_queue_sender("sess-lock") as sender:
        sender.send_messages(ServiceBusMessage("waiting", session_id=sid))
    with client.get_queue_receiver("sess-lock", session_id=sid, max_wait_time=5) as receiver:
        time.sleep(3.5)
        with pytest.raises(SessionLockLostError):
            receiver.receive_messages(max_wait_time=1)
    # The broker let the session go: another receiver can take it.
    assert not any(s["locked"] for s in broker.stats()["sess-lock"]["sessions"] if s["id"] == sid)
    with client.get_queue_receiver("sess-lock", session_id=sid, max_wait_time=5) as receiver:
        [m] = receive_n(receiver, 1)
        receiver.complete_message(m)
