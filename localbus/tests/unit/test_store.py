"""The queue semantics on their own: no sockets, time passed in explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest

from localbus.config import config_from_dict, parse_duration, ConfigError
from localbus.journal import SqliteJournal
from localbus.entities import Incoming, Outcome
from localbus.errors import MessageLockLost, SessionCannotBeLocked, SessionLockLost
from localbus.store import Store

CONFIG = config_from_dict({
    "queues": [
        {"name": "q", "lockDuration": "PT10S", "maxDeliveryCount": 3},
        {"name": "s", "requiresSession": True, "lockDuration": "PT10S"},
        {"name": "d", "requiresDuplicateDetection": True, "duplicateDetectionHistoryTimeWindow": "PT60S"},
    ]
})


def msg(body: str, **kw) -> Incoming:
    return Incoming(payload=body.encode(), **kw)


def test_store_module_knows_nothing_of_amqp():
    import localbus

    package = Path(localbus.__file__).parent
    for name in ("store.py", "store_management.py", "store_timers.py", "entities.py", "errors.py", "journal.py"):
        source = (package / name).read_text()
        assert "proton" not in source and "azure" not in source, name


def test_lock_expiry_redelivers_and_max_delivery_count_dead_letters():
    store = Store(CONFIG)
    store.enqueue("q", [msg("a")], now=0)
    consumer = store.attach("q")
    for attempt in range(3):
        m = store.next_message(consumer, now=attempt * 20)
        assert m is not None and m.delivery_count == attempt
        assert store.next_message(consumer, now=attempt * 20) is None  # locked: nobody else gets it
        store.tick(now=attempt * 20 + 11)
    assert store.next_message(consumer, now=100) is None
    dlq = store.attach("q/$DeadLetterQueue")
    dead = store.next_message(dlq, now=100)
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded" and dead.dead_letter_source == "q"


def test_settling_with_an_expired_lock_fails():
    store = Store(CONFIG)
    store.enqueue("q", [msg("a")], now=0)
    m = store.next_message(store.attach("q"), now=0)
    with pytest.raises(MessageLockLost):
        store.settle(m.lock_token, Outcome.COMPLETE, now=10.5)


def test_sessions_are_exclusive_fifo_and_next_available_prefers_the_oldest():
    store = Store(CONFIG)
    store.enqueue("s", [msg("b1", session_id="B")], now=0)
    store.enqueue("s", [msg("a1", session_id="A"), msg("a2", session_id="A")], now=1)
    first = store.accept_session("s", None, now=2)
    assert first.session.id == "B"
    with pytest.raises(SessionCannotBeLocked):
        store.accept_session("s", "B", now=2)
    a = store.accept_session("s", None, now=2)
    assert a.session.id == "A"
    assert store.accept_session("s", None, now=2) is None
    m1 = store.next_message(a, now=2)
    m2 = store.next_message(a, now=2)
    assert [m1.payload, m2.payload] == [b"a1", b"a2"]
    store.settle(m1.lock_token, Outcome.ABANDON, now=3)
    again = store.next_message(a, now=3)
    assert again.payload == b"a1" and again.delivery_count == 1
    # Session lock expiry: everything it held goes back, in order, with a higher delivery count.
    store.tick(now=13)
    lost = store.take_lost_sessions()
    assert lost and lost[-1][1].id == "A"
    assert store.take_lost_sessions() == []  # handed over once
    with pytest.raises((SessionLockLost, MessageLockLost)):
        store.settle(m2.lock_token, Outcome.COMPLETE, now=13)
    a2 = store.accept_session("s", "A", now=14)
    got = [store.next_message(a2, now=14) for _ in range(2)]
    assert [(m.payload, m.delivery_count) for m in got] == [(b"a1", 2), (b"a2", 1)]


def test_duplicate_detection_window():
    store = Store(CONFIG)
    assert store.enqueue("d", [msg("1", message_id="x")], now=0) == [1]
    assert store.enqueue("d", [msg("2", message_id="x")], now=59) == [None]
    assert store.enqueue("d", [msg("3", message_id="x")], now=61) == [2]


def test_journal_restores_everything_but_locks(tmp_path):
    journal = SqliteJournal(tmp_path)
    store = Store(CONFIG, journal)
    store.enqueue("q", [msg(str(i)) for i in range(5)], now=0)
    store.enqueue("s", [msg("s", session_id="S")], now=0)
    store.enqueue("q", [msg("sched", scheduled_at=1e12)], now=0)
    consumer = store.attach("q")
    m0, m1, m2 = (store.next_message(consumer, now=1) for _ in range(3))
    store.settle(m0.lock_token, Outcome.COMPLETE, now=1)
    store.settle(m1.lock_token, Outcome.DEFER, now=1)
    s = store.accept_session("s", "S", now=1)
    store.set_session_state("s", "S", b"state", now=1)
    journal.commit()
    journal.close()

    restored = Store(CONFIG, SqliteJournal(tmp_path))
    counts = restored.queues["q"][0].counts()
    assert counts == {"active": 3, "deferred": 1, "scheduled": 1, "locked": 0}
    consumer = restored.attach("q")
    assert [restored.next_message(consumer, now=2).payload for _ in range(3)] == [b"2", b"3", b"4"]
    assert restored.enqueue("q", [msg("new")], now=2) == [7]
    session = restored.accept_session("s", "S", now=2)
    assert restored.get_session_state("s", "S", now=2) == b"state"
    assert session is not None and s is not None
    restored.journal.close()


def test_config_durations_and_errors():
    assert parse_duration("PT1M", "k") == 60
    assert parse_duration("P1DT2H", "k") == 93600
    assert parse_duration(2.5, "k") == 2.5
    with pytest.raises(ConfigError, match="queues\\[0\\].maxDeliveryCount"):
        config_from_dict({"queues": [{"name": "x", "maxDeliveryCount": 0}]})
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"queues": [{"name": "x", "lockduration": "PT1M"}]})
    q = config_from_dict({"queues": [{"name": "x"}]}).queues[0]
    assert (q.lock_duration, q.max_delivery_count, q.duplicate_detection_window, q.max_message_size_bytes) == (60, 10, 600, 262144)


def test_connection_string_for_a_port():
    from localbus.embedded import connection_string_for

    cs = connection_string_for(5999)
    assert cs == ("Endpoint=sb://localhost:5999;SharedAccessKeyName=RootManageSharedAccessKey;"
                  "SharedAccessKey=bG9jYWxidXMtZGV2ZWxvcG1lbnQta2V5LW5vdC1hLXNlY3JldA==;UseDevelopmentEmulator=true;")
    assert "SharedAccessKeyName=k;SharedAccessKey=s;" in connection_string_for(1, {"queues": [], "sharedAccessKeyName": "k", "sharedAccessKey": "s"})
