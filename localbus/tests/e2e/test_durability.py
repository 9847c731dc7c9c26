"""Durability: acknowledged sends, dead-lettered, deferred and scheduled messages and session state survive kill -9."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from localbus import Broker
from localbus.journal import DataDirInUse
from localbus.embedded import broker_process, running_broker
from localbus.tests.helpers import receive_n

CONFIG = {
    "queues": [
        {"name": "orders", "requiresSession": True, "requiresDuplicateDetection": True},
        {"name": "work", "lockDuration": "PT30S"},
    ]
}


@pytest.mark.e2e
def test_kill_9_loses_no_acknowledged_message(tmp_path):
    with broker_process(CONFIG, data_dir=tmp_path) as proc:
        with ServiceBusClient.from_connection_string(proc.connection_string) as client:
            with client.get_queue_sender("work") as sender:
                sender.send_messages([ServiceBusMessage(f"m{i}", message_id=f"id-{i}") for i in range(100)])
                for i in range(5):
                    sender.send_messages(ServiceBusMessage(f"single-{i}"))
                in_an_hour = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
                [scheduled_seq] = sender.schedule_messages(ServiceBusMessage("later"), in_an_hour)
            with client.get_queue_sender("orders") as sender:
                sender.send_messages(ServiceBusMessage("order-1", session_id="c-1", message_id="o-1"))
            with client.get_queue_receiver("orders", session_id="c-1", max_wait_time=5) as receiver:
                receiver.session.set_state(b"checkpoint-1")
            with client.get_queue_receiver("work", max_wait_time=5) as receiver:
                first = receive_n(receiver, 3)
                receiver.dead_letter_message(first[0], reason="Bad", error_description="broken")
                receiver.defer_message(first[1])
                deferred_seq = first[1].sequence_number
                # first[2] stays locked when the broker dies.
            proc.kill()
            proc.start()
        with ServiceBusClient.from_connection_string(proc.connection_string) as client:
            stats = proc.stats()["work"]
            assert stats["active"] == 103  # 105 sent - dead-lettered - deferred; the locked one is back
            assert stats["deadLettered"] == 1 and stats["deferred"] == 1 and stats["scheduled"] == 1
            with client.get_queue_receiver("work", max_wait_time=5, prefetch_count=200) as receiver:
                got = receive_n(receiver, 103)
                assert sorted(str(m) for m in got) == sorted([f"m{i}" for i in range(2, 100)] + [f"single-{i}" for i in range(5)])
                for m in got:
                    receiver.complete_message(m)
                [deferred] = receiver.receive_deferred_messages([deferred_seq])
                assert str(deferred) == "m1"
                receiver.complete_message(deferred)
                peeked = receiver.peek_messages(max_message_count=10, sequence_number=scheduled_seq)
                assert [str(m) for m in peeked] == ["later"]
            with client.get_queue_sender("work") as sender:
                sender.cancel_scheduled_messages(scheduled_seq)
            with client.get_queue_receiver("work", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5) as dlq:
                [dead] = receive_n(dlq, 1)
                assert str(dead) == "m0" and dead.dead_letter_reason == "Bad"
                dlq.complete_message(dead)
            with client.get_queue_receiver("orders", session_id="c-1", max_wait_time=5) as receiver:
                assert receiver.session.get_state() == b"checkpoint-1"
                [order] = receive_n(receiver, 1)
                assert str(order) == "order-1"
                receiver.complete_message(order)
            with client.get_queue_sender("orders") as sender:
                # The duplicate-detection history survives the restart too.
                sender.send_messages(ServiceBusMessage("order-1 again", session_id="c-1", message_id="o-1"))
        stats = proc.stats()
        assert stats["orders"]["active"] == 0
        assert stats["work"] == {**stats["work"], "active": 0, "deadLettered": 0, "deferred": 0, "scheduled": 0}
        assert proc.terminate() == 0


def test_in_process_broker_restarts_from_its_data_dir(tmp_path):
    with running_broker(CONFIG, data_dir=tmp_path) as broker:
        with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            with client.get_queue_sender("work") as sender:
                sender.send_messages([ServiceBusMessage(f"r{i}") for i in range(10)])
    with running_broker(CONFIG, data_dir=tmp_path) as broker:
        assert broker.stats()["work"]["active"] == 10
        with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            with client.get_queue_sender("work") as sender:
                sender.send_messages(ServiceBusMessage("after restart"))
            with client.get_queue_receiver("work", max_wait_time=5, prefetch_count=20) as receiver:
                got = receive_n(receiver, 11)
                assert [str(m) for m in got] == [f"r{i}" for i in range(10)] + ["after restart"]
                # Sequence numbers keep growing across restarts.
                assert got[-1].sequence_number == 11
                for m in got:
                    receiver.complete_message(m)


def test_a_second_broker_on_the_same_data_dir_is_refused(tmp_path):
    with running_broker(CONFIG, data_dir=tmp_path):
        with pytest.raises(DataDirInUse, match="another localbus process uses the data directory"):
            Broker(CONFIG, port=0, http_port=None, data_dir=tmp_path).start()


def test_in_memory_mode_keeps_nothing(tmp_path):
    with running_broker(CONFIG, in_memory=True) as broker:
        with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            with client.get_queue_sender("work") as sender:
                sender.send_messages(ServiceBusMessage("gone"))
        assert broker.stats()["work"]["active"] == 1
    assert list(tmp_path.iterdir()) == []
