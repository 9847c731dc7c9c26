"""``ServiceBusStatusConsumer``: competing consumer of the ``order-status`` queue (azure.servicebus.aio).

Every instance receives from the same queue, so each event is taken by one of them and routed from there.
A message is completed only after it was routed: when the holder did not take it, or the registry has
just come back empty, it stays locked and is routed again a second later (a few times at most); the broker
keeps it while no instance runs, and a failure of the connection is retried with growing pauses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from service_platform.backoff import Backoff
from service_platform.servicebus_clients import ServiceBusClientFactory
from websocket_service import telemetry
from websocket_service.core import Disposition, InvalidEvent, StatusEvent
from websocket_service.ports import EventBatchHandler

log = logging.getLogger("websocket_service.servicebus")

# A message routed again (holder did not take it, registry just restarted) waits this long between tries,
# at most this many times, well inside the queue's lock duration.
REROUTE_DELAY_SECONDS = 1.0
MAX_REROUTES = 10


class ServiceBusStatusConsumer:
    def __init__(
        self,
        client_factory: Callable[[], Any],
        queue_name: str,
        *,
        prefetch: int = 100,
        max_wait_seconds: float = 1.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._queue = queue_name
        self._prefetch = prefetch
        self._max_wait = max_wait_seconds
        self._backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self._connected = False
        self._later: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, connection_string: str | None, namespace: str | None, queue_name: str) -> ServiceBusStatusConsumer:
        """Connection string when given, else the namespace with the process's workload identity."""
        return cls(ServiceBusClientFactory(connection_string, namespace), queue_name)

    @property
    def connected(self) -> bool:
        return self._connected

    async def run(self, handle: EventBatchHandler) -> None:
        while True:
            try:
                async with self._client_factory() as client:
                    receiver = client.get_queue_receiver(self._queue, prefetch_count=self._prefetch)
                    async with receiver:
                        if not self._connected:
                            log.info("receiving status events", extra={"queue": self._queue})
                        self._connected = True
                        self._backoff.reset()
                        await self._receive(receiver, handle)
            except asyncio.CancelledError:
                self._connected = False
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the link means reconnect
                delay = self._backoff.next_delay()
                if self._connected:
                    log.error("status queue connection lost; reconnecting", extra={"error": repr(exc)})
                else:
                    log.warning("status queue unreachable; retrying", extra={"error": repr(exc), "retryIn": delay})
                self._connected = False
                await asyncio.sleep(delay)

    async def _receive(self, receiver: Any, handle: EventBatchHandler) -> None:
        # One message per call: with a larger count the SDK keeps collecting for up to 0.2 s after the
        # first message (or for the whole wait when the batch was filled from the prefetch buffer), which
        # measured 50-200 ms added to every event; one at a time it returns at once (about 1 ms) and
        # prefetching still keeps the link busy.
        while True:
            messages = await receiver.receive_messages(max_message_count=1, max_wait_time=self._max_wait)
            for message in messages:
                try:
                    event = StatusEvent.from_json(b"".join(message.body))
                except (InvalidEvent, TypeError) as exc:
                    log.error("status event dead-lettered: it does not match the contract",
                              extra={"messageId": message.message_id, "error": str(exc)})
                    await receiver.dead_letter_message(message, reason="InvalidStatusEvent",
                                                       error_description=str(exc)[:1000])
                    continue
                with telemetry.receipt(self._queue, message.application_properties, event,
                                       str(message.message_id or "")) as event:
                    [disposition] = await handle([(event, message.delivery_count or 0)])
                if disposition == Disposition.RETRY_LATER:
                    # Held (locked) and routed again in a moment, without holding up the messages behind it.
                    task = asyncio.get_running_loop().create_task(self._route_later(receiver, message, event, handle))
                    self._later.add(task)
                    task.add_done_callback(self._later.discard)
                else:
                    await self._settle(receiver, message, disposition)

    async def _route_later(self, receiver: Any, message: Any, event: StatusEvent, handle: EventBatchHandler) -> None:
        disposition = Disposition.RETRY_LATER
        attempt = message.delivery_count or 0
        for _ in range(MAX_REROUTES):
            await asyncio.sleep(REROUTE_DELAY_SECONDS)
            attempt += 1
            [disposition] = await handle([(event, attempt)])
            if disposition != Disposition.RETRY_LATER:
                break
        try:
            await self._settle(receiver, message, Disposition.COMPLETE if disposition == Disposition.RETRY_LATER
                               else disposition)
        except Exception as exc:  # noqa: BLE001 - the lock may have gone with the link: it is redelivered
            log.warning("status event not settled after re-routing; it will be redelivered",
                        extra={"correlationId": event.correlation_id, "error": repr(exc)})

    @staticmethod
    async def _settle(receiver: Any, message: Any, disposition: str) -> None:
        if disposition == Disposition.COMPLETE:
            await receiver.complete_message(message)
        else:
            await receiver.abandon_message(message)
