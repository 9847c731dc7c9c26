"""Sends messages to one Service Bus queue, coalescing concurrent sends into batches.

One broker round trip costs far more than encoding a message, so while one batch is on the wire every
further ``publish`` call waits in a queue and goes out with the next batch. Under load this turns N
round trips into a few; with a single caller it adds no delay at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import MessageSizeExceededError

log = logging.getLogger(__name__)

# How long the SDK's AMQP transport waits for an incoming frame at a time. Reading and writing share one
# lock in the SDK, and every 30 s its keep-alive task listens for a frame while holding it: on an idle link
# every send meanwhile waited the SDK's default 0.2 s (one 200 ms stall of all intake requests every 30 s,
# docs/benchmarks.md). With a short wait the keep-alive gives the lock back at once; a send waiting for its
# acknowledgement just listens again.
SOCKET_TIMEOUT_SECONDS = 0.02


@dataclass(frozen=True)
class Envelope:
    """A message as the core hands it over: bytes plus the Service Bus properties that route it."""

    body: bytes
    message_id: str
    correlation_id: str | None = None
    session_id: str | None = None
    content_type: str = "application/json"
    application_properties: dict[str, str | int] = field(default_factory=dict)

    def to_servicebus(self) -> ServiceBusMessage:
        return ServiceBusMessage(
            self.body,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            session_id=self.session_id,
            content_type=self.content_type,
            application_properties=dict(self.application_properties) or None,
        )


class SendFailed(Exception):
    """The message never left: nothing was accepted, and the caller may retry."""


class AcknowledgementUnknown(SendFailed):
    """The message went out but no acknowledgement came back in time (or the link broke mid-send): the broker
    may hold it. Only a retry with the same message id (the broker's duplicate detection) is safe."""


class ServiceBusBatchSender:
    """Publishes ``Envelope``s to ``queue``; ``publish`` returns once the broker has acknowledged."""

    def __init__(
        self,
        client_factory: Callable[[], ServiceBusClient],
        queue: str,
        *,
        max_batch_messages: int = 500,
        timeout_seconds: float = 10.0,
    ) -> None:
        """``publish`` answers within ``timeout_seconds``; the SDK's send (its own retries included) is
        bounded to a little less, so no send is still under way after its caller got an answer."""
        self._client_factory = client_factory
        self._queue = queue
        self._max_batch_messages = max_batch_messages
        self._timeout = timeout_seconds
        self._client: ServiceBusClient | None = None
        self._sender: ServiceBusSender | None = None
        self._pending: deque[tuple[Envelope, asyncio.Future[None]]] = deque()
        self._on_the_wire: set[asyncio.Future[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._sending_since: float | None = None
        self._last_error: str | None = None
        self.batches_sent = 0

    @property
    def queue(self) -> str:
        return self._queue

    async def publish(self, envelope: Envelope) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((envelope, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_while_pending())
        try:
            # On timeout the future is cancelled, so a message still waiting for its batch is never sent
            # after the caller was told it was not accepted.
            await asyncio.wait_for(asyncio.shield(future), self._timeout)
        except TimeoutError:
            if future in self._on_the_wire:
                future.add_done_callback(lambda done: done.cancelled() or done.exception())  # nobody waits now
                raise AcknowledgementUnknown(f"queue '{self._queue}' did not acknowledge within "
                                             f"{self._timeout:.0f}s; it may hold message {envelope.message_id}") from None
            future.cancel()
            raise SendFailed(f"queue '{self._queue}' did not take the message within {self._timeout:.0f}s") from None

    async def check(self, stuck_after_seconds: float = 3.0) -> None:
        """Raise ``SendFailed`` unless the broker is taking messages (for health checks).

        A send that has waited for the broker longer than ``stuck_after_seconds`` means it is not; after a
        failed send the link is opened afresh, which fails while the broker is down.
        """
        if self._sending_since is not None and time.monotonic() - self._sending_since > stuck_after_seconds:
            raise SendFailed(f"queue '{self._queue}': a send has waited "
                                f"{time.monotonic() - self._sending_since:.0f}s for the broker")
        if self._last_error is not None and self._sending_since is None:
            await self._reset()
        try:
            await self._open_sender()
        except Exception as error:
            await self._reset()
            raise SendFailed(f"queue '{self._queue}' is unreachable: {error}") from error
        self._last_error = None

    async def close(self) -> None:
        """Let a send under way finish, within one deadline: every caller has had its answer by then, so a
        flusher still opening a link to a broker that is down (the SDK retries for longer) is cancelled."""
        if self._flusher is not None:
            done, _ = await asyncio.wait({self._flusher}, timeout=self._timeout)
            if not done:
                self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._reset()

    async def _open_sender(self) -> ServiceBusSender:
        if self._sender is None:
            self._client = self._client_factory()
            self._sender = self._client.get_queue_sender(self._queue, socket_timeout=SOCKET_TIMEOUT_SECONDS)
            await self._sender.__aenter__()
        return self._sender

    async def _reset(self) -> None:
        sender, client = self._sender, self._client
        self._sender = self._client = None
        for closable in (sender, client):
            if closable is not None:
                try:
                    await closable.close()
                except Exception:  # closing a broken link must not hide the error that broke it
                    log.debug("closing a broken Service Bus link failed", exc_info=True)

    async def _flush_while_pending(self) -> None:
        while self._pending:
            taken = [self._pending.popleft() for _ in range(min(len(self._pending), self._max_batch_messages))]
            live = [(envelope, future) for envelope, future in taken if not future.done()]
            if live:
                await self._send(live)

    async def _send(self, items: list[tuple[Envelope, asyncio.Future[None]]]) -> None:
        self._sending_since = time.monotonic()
        try:
            sender = await self._open_sender()
            batch = await sender.create_message_batch()
            included: list[tuple[Envelope, asyncio.Future[None]]] = []
            for position, (envelope, future) in enumerate(items):
                try:
                    batch.add_message(envelope.to_servicebus())
                except MessageSizeExceededError:
                    if included:  # the batch is full: the rest goes out with the next one
                        self._pending.extendleft(reversed(items[position:]))
                        break
                    future.set_exception(
                        SendFailed(f"message {envelope.message_id} is larger than the broker accepts"))
                    continue
                included.append((envelope, future))
            items = included
        except Exception as error:  # nothing went out: a plain failure, safe to retry
            await self._fail(items, error, SendFailed)
            return
        if not items:
            self._sending_since = None
            return
        wire = {future for _, future in items}
        self._on_the_wire |= wire
        try:
            # Bounded below the callers' deadline, the SDK's retries included: no send outlives its answer.
            await sender.send_messages(batch, timeout=max(0.5, self._timeout * 0.8))
        except Exception as error:  # it may have landed: the callers must retry with the same message id
            await self._fail(items, error, AcknowledgementUnknown)
            return
        finally:
            self._on_the_wire -= wire
            self._sending_since = None
        self._last_error = None
        self.batches_sent += 1
        for _, future in items:
            if not future.done():
                future.set_result(None)

    async def _fail(self, items: list[tuple[Envelope, asyncio.Future[None]]], error: Exception,
                    kind: type[SendFailed]) -> None:
        self._sending_since = None
        self._last_error = str(error)
        log.warning("sending to Service Bus failed",
                    extra={"queue": self._queue, "messages": len(items), "error": str(error),
                           "outcome": "unknown" if kind is AcknowledgementUnknown else "not sent"})
        await self._reset()
        for _, future in items:
            if not future.done():
                future.set_exception(kind(f"queue '{self._queue}' did not acknowledge the message: {error}"))
