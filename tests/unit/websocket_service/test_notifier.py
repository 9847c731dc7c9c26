"""The service layer of the WebSocket service, driven through in-memory Fake* ports."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

from websocket_service.core import Disposition, RegistryEntry, SocketSubscriptions, StatusEvent
from websocket_service.notifier import StatusNotifier
from websocket_service.ports import RegistryUnavailable, StatusUnavailable


class FakeRegistry:
    """In-memory registry shared by several fake instances; ``down`` makes every call fail like Redis down."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, RegistryEntry]] = {}
        self.down = False
        self.epoch = 0.0  # long ago: no recent restart

    def view(self, instance_id: str, url: str) -> FakeRegistryView:
        return FakeRegistryView(self, instance_id, url)


class FakeRegistryView:
    def __init__(self, shared: FakeRegistry, instance_id: str, url: str) -> None:
        self.shared, self.instance_id, self.url = shared, instance_id, url

    async def register(self, ids: Sequence[str]) -> bool:
        if self.shared.down:
            return False
        for cid in ids:
            self.shared.entries.setdefault(cid, {})[self.instance_id] = RegistryEntry(self.instance_id, self.url, 1e12)
        return True

    async def deregister(self, ids: Sequence[str]) -> bool:
        if self.shared.down:
            return False
        for cid in ids:
            self.shared.entries.get(cid, {}).pop(self.instance_id, None)
        return True

    async def lookup(self, ids: Sequence[str]) -> dict[str, list[RegistryEntry]]:
        if self.shared.down:
            raise RegistryUnavailable("down")
        return {cid: list(self.shared.entries[cid].values()) for cid in ids if self.shared.entries.get(cid)}

    async def ping(self) -> bool:
        return not self.shared.down

    async def started_at(self) -> float:
        if self.shared.down:
            raise RegistryUnavailable("down")
        return self.shared.epoch

    async def aclose(self) -> None:
        pass


class FakeStatusReader:
    def __init__(self) -> None:
        self.statuses: dict[str, StatusEvent] = {}
        self.down = False

    async def current(self, correlation_id: str) -> StatusEvent | None:
        if self.down:
            raise StatusUnavailable("down")
        return self.statuses.get(correlation_id)

    async def aclose(self) -> None:
        pass


class FakeForwarder:
    """Delivers forwards straight into the target notifier, like the internal endpoint would."""

    def __init__(self) -> None:
        self.instances: dict[str, StatusNotifier] = {}
        self.sent: list[tuple[str, list[StatusEvent]]] = []

    async def forward(self, url: str, events: Sequence[StatusEvent]) -> bool:
        self.sent.append((url, list(events)))
        target = self.instances.get(url)
        if target is None:
            return False
        target.deliver_local(events)
        return True

    async def aclose(self) -> None:
        pass


class FakeSubscriber:
    def __init__(self, limit: int = 10) -> None:
        self.subscriptions = SocketSubscriptions(limit)
        self.received: list[StatusEvent] = []

    def deliver(self, event: StatusEvent) -> None:
        if self.subscriptions.admit(event):
            self.received.append(event)


def cid() -> str:
    return str(uuid.uuid4())


def two_instances() -> tuple[StatusNotifier, StatusNotifier, FakeRegistry, FakeStatusReader, FakeForwarder]:
    registry, reader, forwarder = FakeRegistry(), FakeStatusReader(), FakeForwarder()
    a = StatusNotifier(instance_id="a", registry=registry.view("a", "http://a"), status_reader=reader, forwarder=forwarder)
    b = StatusNotifier(instance_id="b", registry=registry.view("b", "http://b"), status_reader=reader, forwarder=forwarder)
    forwarder.instances = {"http://a": a, "http://b": b}
    return a, b, registry, reader, forwarder


async def test_subscribe_sends_current_status_and_registers() -> None:
    a, _, registry, reader, _ = two_instances()
    order = cid()
    reader.statuses[order] = StatusEvent(order, "Accepted")
    client = FakeSubscriber()
    await a.subscribe(client, order)
    assert [e.status for e in client.received] == ["Accepted"]
    assert set(registry.entries[order]) == {"a"}


async def test_late_subscriber_gets_terminal_status_at_once_and_is_deregistered() -> None:
    a, _, registry, reader, _ = two_instances()
    order = cid()
    reader.statuses[order] = StatusEvent(order, "Completed", order_id=3, total="9.00")
    client = FakeSubscriber()
    await a.subscribe(client, order)
    await a.wait_background()
    assert [(e.status, e.order_id) for e in client.received] == [("Completed", 3)]
    assert order not in client.subscriptions
    assert not registry.entries[order], "a finished order leaves the registry"


async def test_events_consumed_anywhere_reach_only_their_subscribers() -> None:
    a, b, _, _, forwarder = two_instances()
    mine, theirs = cid(), cid()
    on_a, on_b = FakeSubscriber(), FakeSubscriber()
    await a.subscribe(on_a, mine)
    await b.subscribe(on_b, theirs)
    dispositions = await a.handle_queue_events([(StatusEvent(mine, "Completed"), 0), (StatusEvent(theirs, "Rejected"), 0)])
    assert dispositions == [Disposition.COMPLETE, Disposition.COMPLETE]
    assert [(e.correlation_id, e.status) for e in on_a.received] == [(mine, "Completed")]
    assert [(e.correlation_id, e.status) for e in on_b.received] == [(theirs, "Rejected")]
    assert [url for url, _ in forwarder.sent] == ["http://b"], "only the instance holding the subscriber is called"


async def test_duplicate_events_reach_the_client_once() -> None:
    a, _, _, reader, _ = two_instances()
    order = cid()
    reader.statuses[order] = StatusEvent(order, "Accepted")
    client = FakeSubscriber()
    await a.subscribe(client, order)
    await a.handle_queue_events([(StatusEvent(order, "Accepted"), 0)])
    await a.handle_queue_events([(StatusEvent(order, "Completed"), 0), (StatusEvent(order, "Completed"), 1)])
    assert [e.status for e in client.received] == ["Accepted", "Completed"]


async def test_events_without_subscribers_are_dropped() -> None:
    a, _, _, _, forwarder = two_instances()
    assert await a.handle_queue_events([(StatusEvent(cid(), "Completed"), 0)]) == [Disposition.COMPLETE]
    assert forwarder.sent == []


async def test_registry_down_local_subscribers_still_served_and_others_given_back() -> None:
    a, b, registry, _, _ = two_instances()
    local_order, remote_order = cid(), cid()
    here, there = FakeSubscriber(), FakeSubscriber()
    await a.subscribe(here, local_order)
    await b.subscribe(there, remote_order)
    registry.down = True
    dispositions = await a.handle_queue_events([(StatusEvent(local_order, "Completed"), 0),
                                                (StatusEvent(remote_order, "Completed"), 0)])
    assert dispositions == [Disposition.COMPLETE, Disposition.ABANDON]
    assert [e.status for e in here.received] == ["Completed"]
    assert there.received == []


async def test_registrations_are_restored_by_refresh_after_registry_loss() -> None:
    a, b, registry, _, _ = two_instances()
    order = cid()
    client = FakeSubscriber()
    await b.subscribe(client, order)
    registry.entries.clear()  # Redis restarted without persistence
    await b.refresh_registrations()
    await a.handle_queue_events([(StatusEvent(order, "Completed"), 0)])
    assert [e.status for e in client.received] == ["Completed"]


async def test_status_api_down_still_subscribes() -> None:
    a, _, _, reader, _ = two_instances()
    reader.down = True
    order = cid()
    client = FakeSubscriber()
    await a.subscribe(client, order)
    assert client.received == [] and order in client.subscriptions
    a.deliver_local([StatusEvent(order, "Failed", reason="poison")])
    assert [e.status for e in client.received] == ["Failed"]


async def test_disconnect_deregisters_only_when_the_last_local_socket_goes() -> None:
    a, _, registry, _, _ = two_instances()
    order = cid()
    first, second = FakeSubscriber(), FakeSubscriber()
    await a.subscribe(first, order)
    await a.subscribe(second, order)
    await a.disconnect(first)
    assert "a" in registry.entries[order]
    await a.disconnect(second)
    assert "a" not in registry.entries[order]


async def test_unsubscribe_stops_events() -> None:
    a, _, _, _, _ = two_instances()
    order = cid()
    client = FakeSubscriber()
    await a.subscribe(client, order)
    await a.unsubscribe(client, order)
    a.deliver_local([StatusEvent(order, "Completed")])
    assert client.received == []


async def test_an_event_the_holder_did_not_take_is_routed_again_then_given_up() -> None:
    a, b, _, _, forwarder = two_instances()
    order = cid()
    await b.subscribe(FakeSubscriber(), order)
    del forwarder.instances["http://b"]  # b stops answering forwards (a timeout, a restart)
    event = StatusEvent(order, "Completed")
    assert await a.handle_queue_events([(event, 0)]) == [Disposition.RETRY_LATER]
    assert await a.handle_queue_events([(event, 3)]) == [Disposition.RETRY_LATER]
    assert await a.handle_queue_events([(event, 4)]) == [Disposition.COMPLETE], "bounded: b is presumed dead"


async def test_right_after_the_registry_came_back_empty_no_entry_is_not_taken_for_nobody() -> None:
    a, b, registry, _, _ = two_instances()
    follower = FakeSubscriber()
    order = cid()
    await b.subscribe(follower, order)
    registry.entries.clear()  # Redis restarted empty: b has not re-registered yet
    registry.epoch = time.time()
    assert await a.handle_queue_events([(StatusEvent(order, "Completed"), 0)]) == [Disposition.RETRY_LATER]
    await b.refresh_registrations()  # b re-registers (the service does within a second of the new epoch)
    assert await a.handle_queue_events([(StatusEvent(order, "Completed"), 1)]) == [Disposition.COMPLETE]
    assert [e.status for e in follower.received] == ["Completed"]
    registry.epoch = time.time() - 60  # long after a restart: no entry means nobody follows it
    assert await a.handle_queue_events([(StatusEvent(cid(), "Completed"), 0)]) == [Disposition.COMPLETE]


async def test_a_failed_status_read_on_subscribe_is_tried_again() -> None:
    registry, reader, forwarder = FakeRegistry(), FakeStatusReader(), FakeForwarder()
    a = StatusNotifier(instance_id="a", registry=registry.view("a", "http://a"), status_reader=reader,
                       forwarder=forwarder, read_retry_delays=(0.01, 0.01, 0.01))
    order = cid()
    reader.statuses[order] = StatusEvent(order, "Completed", order_id=5)
    reader.down = True
    client = FakeSubscriber()
    await a.subscribe(client, order)
    assert client.received == []
    reader.down = False
    for _ in range(50):
        if client.received:
            break
        await asyncio.sleep(0.01)
    assert [(e.status, e.order_id) for e in client.received] == [("Completed", 5)]


class SlowStatusReader(FakeStatusReader):
    """Answers only when released, so a test can deliver events while a subscribe's status read is under way."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def current(self, correlation_id: str) -> StatusEvent | None:
        await self.release.wait()
        return await super().current(correlation_id)


async def test_an_older_attempt_s_event_during_a_resubscribe_does_not_end_the_new_attempt() -> None:
    """After a replay the client subscribes again; a late event of the first attempt that arrives while the
    current status is being read is recognised as older (the current status goes first) and dropped."""
    registry, reader, forwarder = FakeRegistry(), SlowStatusReader(), FakeForwarder()
    a = StatusNotifier(instance_id="a", registry=registry.view("a", "http://a"), status_reader=reader, forwarder=forwarder)
    forwarder.instances = {"http://a": a}
    order = cid()
    reader.statuses[order] = StatusEvent(order, "Accepted", attempt=2)
    client = FakeSubscriber()
    subscribing = asyncio.create_task(a.subscribe(client, order))
    await asyncio.sleep(0)
    a.deliver_local([StatusEvent(order, "Failed", reason="first attempt", attempt=1)])
    reader.release.set()
    await subscribing
    a.deliver_local([StatusEvent(order, "Completed", order_id=9, attempt=2)])
    assert [(e.status, e.attempt) for e in client.received] == [("Accepted", 2), ("Completed", 2)]


async def test_an_event_newer_than_the_status_read_is_delivered_after_it() -> None:
    registry, reader, forwarder = FakeRegistry(), SlowStatusReader(), FakeForwarder()
    a = StatusNotifier(instance_id="a", registry=registry.view("a", "http://a"), status_reader=reader, forwarder=forwarder)
    order = cid()
    reader.statuses[order] = StatusEvent(order, "Accepted")
    client = FakeSubscriber()
    subscribing = asyncio.create_task(a.subscribe(client, order))
    await asyncio.sleep(0)
    a.deliver_local([StatusEvent(order, "Completed", order_id=4)])
    assert client.received == [], "held until the current status is known"
    reader.release.set()
    await subscribing
    assert [e.status for e in client.received] == ["Accepted", "Completed"]
