"""The service layer: who on this instance follows which order, and how events reach them.

It knows nothing of Starlette, Redis or Service Bus: it talks to sockets through ``Subscriber`` and to the
outside through the ports, so the unit tests drive it with fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from websocket_service.core import (
    Disposition,
    SocketSubscriptions,
    StatusEvent,
    disposition_after_registry_failure,
    forward_targets,
)
from websocket_service.ports import (
    SocketHolderRegistry,
    EventForwarder,
    RegistryUnavailable,
    StatusReader,
    StatusUnavailable,
    unique,
)

log = logging.getLogger("websocket_service.notifier")


class Subscriber(Protocol):
    """One socket as the service layer sees it."""

    subscriptions: SocketSubscriptions

    def deliver(self, event: StatusEvent) -> None:
        """Queue the event for the socket if its subscriptions admit it; never blocks."""
        ...


class StatusNotifier:
    """Routes status events to the sockets that follow them, here or on another instance."""

    def __init__(
        self,
        *,
        instance_id: str,
        registry: SocketHolderRegistry,
        status_reader: StatusReader,
        forwarder: EventForwarder,
        max_queue_attempts: int = 5,
        registry_recovery_seconds: float = 5.0,
        read_retry_delays: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance_id = instance_id
        self._registry = registry
        self._reader = status_reader
        self._forwarder = forwarder
        self._max_attempts = max_queue_attempts
        self._recovery = registry_recovery_seconds
        self._read_retry_delays = tuple(read_retry_delays)
        self._reads: set[asyncio.Task[None]] = set()
        self._clock = clock
        self._local: dict[str, set[Subscriber]] = {}
        self._reading: dict[tuple[Subscriber, str], list[StatusEvent]] = {}
        self._orphans: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        self.registrations_pending = False
        """A registration failed (a subscribe's, a refresh's, or Redis was unreachable): the refresh loop
        registers every followed order again as soon as Redis answers."""

    @property
    def followed(self) -> list[str]:
        """Ids with at least one subscriber on this instance."""
        return list(self._local)

    def subscriber_count(self, correlation_id: str) -> int:
        return len(self._local.get(correlation_id, ()))

    async def subscribe(self, subscriber: Subscriber, correlation_id: str) -> None:
        """Follow an order, then send its current status.

        Registration comes first: an event published after the status read is then routed here, and one
        published before it is already visible in the status read, so nothing falls in between.
        """
        if not subscriber.subscriptions.add(correlation_id):
            return
        holders = self._local.setdefault(correlation_id, set())
        holders.add(subscriber)
        # Events arriving while the current status is read wait for it: the current status goes first, so
        # an older event (an earlier attempt's, before a replay) is recognised as older and dropped.
        key = (subscriber, correlation_id)
        self._reading[key] = []
        try:
            if len(holders) == 1 and not await self._registry.register([correlation_id]):
                self.registrations_pending = True
            current = await self._reader.current(correlation_id)
        except StatusUnavailable as exc:
            self._release_held(key)
            # The read is how a (re)subscribing client learns what it missed: try again in the background.
            log.warning("current status could not be read; reading it again shortly",
                        extra={"correlationId": correlation_id, "error": str(exc)})
            task = asyncio.get_running_loop().create_task(self._read_again(subscriber, correlation_id))
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)
            return
        except BaseException:
            self._release_held(key)
            raise
        self._release_held(key, first=current)

    def _release_held(self, key: tuple[Subscriber, str], first: StatusEvent | None = None) -> None:
        """Stop holding the order's events for this subscriber and deliver them, ``first`` before the rest."""
        subscriber, correlation_id = key
        held = self._reading.pop(key, [])
        for event in ([first] if first is not None else []) + held:
            if correlation_id in subscriber.subscriptions:
                self._deliver_to(subscriber, event)

    async def _read_again(self, subscriber: Subscriber, correlation_id: str) -> None:
        for delay in self._read_retry_delays:
            await asyncio.sleep(delay)
            if correlation_id not in subscriber.subscriptions:
                return  # unsubscribed, closed, or the final status arrived meanwhile
            try:
                current = await self._reader.current(correlation_id)
            except StatusUnavailable:
                continue
            if current is not None and correlation_id in subscriber.subscriptions:
                self._deliver_to(subscriber, current)
            return
        log.warning("current status still unreadable; waiting for events",
                    extra={"correlationId": correlation_id})

    async def unsubscribe(self, subscriber: Subscriber, correlation_id: str) -> None:
        subscriber.subscriptions.remove(correlation_id)
        if self._forget(subscriber, correlation_id):
            await self._registry.deregister([correlation_id])

    async def disconnect(self, subscriber: Subscriber) -> None:
        """The socket is gone: forget it and deregister the orders nobody here follows any more."""
        ids = subscriber.subscriptions.ids
        for correlation_id in ids:
            subscriber.subscriptions.remove(correlation_id)
        orphaned = [cid for cid in ids if self._forget(subscriber, cid)]
        if orphaned:
            await self._registry.deregister(orphaned)

    def deliver_local(self, events: Sequence[StatusEvent]) -> int:
        """Push events to this instance's subscribers; returns how many sockets were offered one."""
        offered = 0
        for event in events:
            holders = self._local.get(event.correlation_id)
            if not holders:
                continue
            for subscriber in list(holders):
                offered += 1
                self._deliver_to(subscriber, event)
        return offered

    async def handle_queue_events(self, received: Sequence[tuple[StatusEvent, int]]) -> list[str]:
        """Route events taken from the status queue; returns a disposition per event."""
        events = [event for event, _ in received]
        local = [bool(self._local.get(e.correlation_id)) for e in events]
        self.deliver_local(events)
        try:
            entries = await self._registry.lookup(unique(e.correlation_id for e in events))
        except RegistryUnavailable:
            return [disposition_after_registry_failure(here, count, self._max_attempts)
                    for here, (_, count) in zip(local, received, strict=True)]
        now = self._clock()
        by_url: dict[str, list[StatusEvent]] = {}
        targets_of: list[list[str]] = []
        for event in events:
            urls = [t.internal_url for t in forward_targets(entries.get(event.correlation_id, ()), self.instance_id, now)]
            targets_of.append(urls)
            for url in urls:
                by_url.setdefault(url, []).append(event)
        forwarded: dict[str, bool] = {}
        if by_url:
            results = await asyncio.gather(*(self._forwarder.forward(url, batch) for url, batch in by_url.items()))
            forwarded = dict(zip(by_url, results, strict=True))
        registry_recovering: bool | None = None
        dispositions = []
        for here, urls, (event, attempt) in zip(local, targets_of, received, strict=True):
            if any(not forwarded[url] for url in urls):
                # The holder did not take it: try again shortly; after a few attempts it is presumed dead
                # (its clients reconnect elsewhere and read the current status).
                dispositions.append(Disposition.RETRY_LATER if attempt + 1 < self._max_attempts
                                    else Disposition.COMPLETE)
            elif not urls and not here:
                if registry_recovering is None:
                    registry_recovering = await self._registry_recovering(now)
                # Right after Redis came back empty, "no entry" may only mean "not re-registered yet".
                dispositions.append(Disposition.RETRY_LATER if registry_recovering else Disposition.COMPLETE)
            else:
                dispositions.append(Disposition.COMPLETE)
        return dispositions

    async def _registry_recovering(self, now: float) -> bool:
        try:
            return now - await self._registry.started_at() < self._recovery
        except RegistryUnavailable:
            return False

    async def refresh_registrations(self, chunk: int = 500) -> bool:
        """Re-register every followed order (keeps TTLs alive and restores entries after a Redis restart).

        In chunks: one pipeline for tens of thousands of ids would hold the event loop for a long time.
        """
        self.registrations_pending = False  # a failure from here on sets it again
        ids = self.followed
        for start in range(0, len(ids), chunk):
            if not await self._registry.register(ids[start:start + chunk]):
                self.registrations_pending = True
                return False
        return True

    async def deregister_all(self) -> None:
        await self.wait_background()
        ids = self.followed
        if ids:
            await self._registry.deregister(ids)

    async def wait_background(self) -> None:
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    def _deliver_to(self, subscriber: Subscriber, event: StatusEvent) -> None:
        held = self._reading.get((subscriber, event.correlation_id))
        if held is not None:
            held.append(event)
            return
        subscriber.deliver(event)
        if event.correlation_id not in subscriber.subscriptions and self._forget(subscriber, event.correlation_id):
            # Finished orders leave the registry in batches: one round trip for all that ended meanwhile.
            self._orphans.add(event.correlation_id)
            if self._flusher is None:
                self._flusher = asyncio.get_running_loop().create_task(self._flush_orphans())

    async def _flush_orphans(self) -> None:
        try:
            while self._orphans:
                await asyncio.sleep(0)
                batch = [cid for cid in self._orphans if cid not in self._local]
                self._orphans.clear()
                if batch:
                    await self._registry.deregister(batch)
        finally:
            self._flusher = None

    def _forget(self, subscriber: Subscriber, correlation_id: str) -> bool:
        """Drop one holder; True when this instance no longer follows the order at all."""
        holders = self._local.get(correlation_id)
        if holders is None:
            return False
        holders.discard(subscriber)
        if holders:
            return False
        del self._local[correlation_id]
        return True
