"""Drives one Service Bus–triggered function with azure-servicebus receivers, as the Functions host does.

Session-enabled entities: up to ``maxConcurrentSessions`` session receivers, each taking the next
available session (NEXT_AVAILABLE), handing its messages to the function one at a time (or
``maxConcurrentCallsPerSession`` at a time), and letting the session go after ``sessionIdleTimeout``
without messages, or sooner when session slots run short (see ``GIVE_WAY_SECONDS``). Other entities: one
receiver and up to ``maxConcurrentCalls`` invocations at once.
With ``autoCompleteMessages`` a message is completed when the function returns; when it fails it is
abandoned, with or without ``autoCompleteMessages`` (as the Functions host does); after MaxDeliveryCount
the broker dead-letters it. Locks are renewed up to ``maxAutoLockRenewalDuration``: a message's while
its invocation runs, a session's while the session is held.

The listener never gives up: when the broker is unreachable it retries with backoff, and it logs one
line per change of state rather than one per failed attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError, SessionLockLostError

from service_platform.backoff import Backoff
from service_platform.message_tracing import TRACEPARENT, carrier_of, current_traceparent

from .connections import ServiceBusConnection
from .host_config import ServiceBusOptions
from .invocation import Invoker
from .loader import FunctionSpec
from .binding_data import message_batch, single_message
from .telemetry import delivery_span

log = logging.getLogger("local_functions_host.servicebus")

# How often an idle receive call comes back to look at the stop flag; bounds shutdown latency.
RECEIVE_POLL_SECONDS = 0.5
_RENEWAL_FOREVER = 10 * 365 * 86400.0

# With many customers, most sessions get one order and then sit idle for sessionIdleTimeout, holding a slot
# the next customer's order waits for. So when slots run short (slots_short), a session without messages
# for this long gives its slot up at once instead of waiting out the timeout. With slots to spare an idle
# session keeps its slot for the whole timeout: its customer's next order then needs no new session, which
# over few customers is what keeps processing fast.
GIVE_WAY_SECONDS = 0.1


def slots_short(slots: int, held: int) -> bool:
    """Fewer than a quarter of the session slots (at least one) are free.

    A free slot is a receiver already waiting at the broker, or one opening (about 0.3 s of the SDK's
    polling): at 50 new sessions a second some 15 slots are opening at any time, so a quarter of 128 still
    leaves a waiting receiver for the next customer's order.
    """
    return slots - held < max(1, slots // 4)


class ListenerState(enum.StrEnum):
    STARTING = "Starting"
    LISTENING = "Listening"
    DISCONNECTED = "Disconnected"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class ServiceBusListener:
    """Runs the receive loops of one function; ``start()`` returns at once, ``stop()`` drains."""

    def __init__(
        self,
        spec: FunctionSpec,
        connection: ServiceBusConnection,
        options: ServiceBusOptions,
        invoker: Invoker,
        *,
        client_factory: Callable[[], tuple[Any, Any]] | None = None,
    ) -> None:
        assert spec.service_bus is not None
        self.spec = spec
        self.trigger = spec.service_bus
        self.connection = connection
        self.options = options
        self._invoker = invoker
        self._client_factory = client_factory or (lambda: connection.create_client(**options.client_retry))
        self.state = ListenerState.STARTING
        self.last_error: str | None = None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._acquiring: set[asyncio.Task[None]] = set()
        self._client: Any = None
        self._renewer: Any = None
        self._probe: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._held_sessions = 0

    @property
    def description(self) -> str:
        kind = "dead-letter queue of " if self.trigger.dead_letter else ""
        sessions = ", sessions" if self.trigger.sessions else ""
        return f"{kind}{self.trigger.entity} ({self.connection.endpoint}{sessions})"

    async def start(self) -> None:
        from azure.servicebus.aio import AutoLockRenewer

        self._client = self._client_factory()
        renewal = self.options.max_auto_lock_renewal_duration
        # Session locks only: a message's lock is renewed by its invocation (_renewing_lock).
        if self.trigger.sessions and (renewal is None or renewal > 0):
            self._renewer = AutoLockRenewer(
                max_lock_renewal_duration=_RENEWAL_FOREVER if renewal is None else renewal,
                on_lock_renew_failure=self._lock_renewal_failed,
            )
        if self.trigger.sessions:
            self._tasks = [
                asyncio.create_task(self._session_loop(slot), name=f"{self.spec.name}-session-{slot}")
                for slot in range(self.options.max_concurrent_sessions)
            ]
            self._probe = asyncio.create_task(self._probe_entity(), name=f"{self.spec.name}-probe")
        else:
            self._tasks = [asyncio.create_task(self._queue_loop(), name=f"{self.spec.name}-receiver")]

    async def stop(self, timeout: float) -> None:
        """Stop receiving, let invocations under way finish (up to ``timeout`` s), then close the links."""
        if self.state != ListenerState.STOPPED:
            self._set_state(ListenerState.STOPPING)
        self._stopping.set()
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.wait([self._probe], timeout=5)
        for task in list(self._acquiring):
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            if pending:
                log.warning(
                    "Function %s: invocations still running after %.0fs; cancelling them (their messages "
                    "will be delivered again when the lock expires).", self.spec.name, timeout,
                    extra={"functionName": self.spec.name},
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=5)
        if self._closing:
            await asyncio.wait(self._closing, timeout=5)
        for closer in (self._renewer, self._client):
            if closer is not None:
                try:
                    await asyncio.wait_for(closer.close(), timeout=5)
                except Exception as exc:  # closing a dead connection may fail; nothing is left to do
                    log.debug("Closing %s failed: %r", type(closer).__name__, exc)
        self._set_state(ListenerState.STOPPED)

    # -- receive loops -------------------------------------------------------------------------

    def _receiver(self, *, session: bool) -> Any:
        kwargs: dict[str, Any] = {"prefetch_count": self.options.prefetch_count}
        # Message locks are renewed only while their invocation runs (_renewing_lock), as the host's
        # processor does: a message a function leaves unsettled comes back when its lock expires. Session
        # locks are registered with the renewer by hand once a session is really held: handed to the
        # receiver, the renewer would also try to register the empty attach of a timed-out wait.
        if session:
            kwargs["session_id"] = NEXT_AVAILABLE_SESSION
            kwargs["max_wait_time"] = self.options.try_timeout
        if self.trigger.dead_letter:
            kwargs["sub_queue"] = ServiceBusSubQueue.DEAD_LETTER
        if self.trigger.queue_name:
            return self._client.get_queue_receiver(self.trigger.queue_name, **kwargs)
        return self._client.get_subscription_receiver(
            self.trigger.topic_name, self.trigger.subscription_name, **kwargs
        )

    async def _probe_entity(self) -> None:
        """Tell "connected" apart from "waiting for a session": a session receiver's attach is held
        until a session has messages, which says nothing about the broker being reachable."""
        try:
            if self.trigger.queue_name:
                sender = self._client.get_queue_sender(self.trigger.queue_name)
            else:
                sender = self._client.get_topic_sender(self.trigger.topic_name)
            async with sender:
                self._connected()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the receive loops report the outage themselves
            log.debug("Function %s: probing %s failed: %r", self.spec.name, self.trigger.entity, exc)

    async def _session_loop(self, slot: int) -> None:
        backoff = Backoff(initial=0.5, maximum=30.0)
        current = asyncio.current_task()
        assert current is not None
        while not self._stopping.is_set():
            try:
                receiver = self._receiver(session=True)
                # Waiting for a session to become free is the only phase a stop may cancel: no
                # message has been handed out yet.
                self._acquiring.add(current)
                try:
                    await receiver.__aenter__()
                except BaseException:
                    await _quietly(receiver.close())
                    raise
                finally:
                    self._acquiring.discard(current)
                try:
                    self._connected()
                    backoff.reset()
                    if receiver.session.locked_until_utc is None:
                        continue  # the wait for a session ended without one
                    if self._renewer is not None:
                        self._renewer.register(receiver, receiver.session)
                    self._held_sessions += 1
                    try:
                        await self._drain_session(receiver)
                    finally:
                        self._held_sessions -= 1
                finally:
                    self._close_later(receiver)
            except OperationTimeoutError:
                # No session had messages within the wait; the broker answered, so we are connected.
                self._connected()
            except SessionLockLostError as exc:
                # The session went to another receiver (its lock ran out); not an outage.
                log.warning("Function %s: lost the lock of a session (%s); taking the next one.", self.spec.name,
                            exc, extra={"functionName": self.spec.name})
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    return
                raise
            except Exception as exc:
                if self._stopping.is_set():
                    return
                await self._disconnected(exc, backoff)

    def _close_later(self, receiver: Any) -> None:
        # The session is released as soon as closing starts (the detach goes out at once), but the
        # SDK then waits up to a second for its keep-alive task; the next session need not wait too.
        task = asyncio.create_task(_quietly(receiver.close()))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _drain_session(self, receiver: Any) -> None:
        session = receiver.session
        log.debug("Function %s: took session %r", self.spec.name, session.session_id)
        loop = asyncio.get_running_loop()
        idle_timeout = self.options.session_idle_timeout
        last_message = loop.time()
        renewal = self.options.max_auto_lock_renewal_duration
        # Once the renewer stops (maxAutoLockRenewalDuration), the session lock would run out under a
        # busy session; let it go a little before that and take the next session (maybe the same one).
        release_at = loop.time() + renewal * 0.9 if renewal else None
        while not self._stopping.is_set():
            idle = loop.time() - last_message
            if idle >= idle_timeout:
                log.debug("Function %s: session %r idle, releasing it", self.spec.name, session.session_id)
                return
            if idle >= GIVE_WAY_SECONDS and slots_short(self.options.max_concurrent_sessions, self._held_sessions):
                log.debug("Function %s: session %r idle while slots are short, releasing it", self.spec.name,
                          session.session_id)
                return
            if release_at is not None and loop.time() >= release_at:
                log.debug("Function %s: session %r held for long, releasing it", self.spec.name, session.session_id)
                return
            # The first wait ends when the session could give way; later ones at the poll interval.
            wait = min(idle_timeout - idle, RECEIVE_POLL_SECONDS)
            if idle < GIVE_WAY_SECONDS:
                wait = min(wait, GIVE_WAY_SECONDS - idle)
            messages = await receiver.receive_messages(
                max_message_count=(
                    self.options.max_message_batch_size
                    if self.trigger.many
                    else self.options.max_concurrent_calls_per_session
                ),
                max_wait_time=wait,
            )
            if not messages:
                continue
            self._connected()
            if self.trigger.many:
                await self._handle_batch(receiver, messages)
            elif len(messages) == 1:
                await self._handle(receiver, messages[0])
            else:
                await asyncio.gather(*(self._handle(receiver, m) for m in messages))
            last_message = loop.time()

    async def _queue_loop(self) -> None:
        backoff = Backoff(initial=0.5, maximum=30.0)
        limit = self.options.max_concurrent_calls
        while not self._stopping.is_set():
            in_flight: set[asyncio.Task[None]] = set()
            try:
                async with self._receiver(session=False) as receiver:
                    self._connected()
                    backoff.reset()
                    try:
                        while not self._stopping.is_set():
                            if len(in_flight) >= limit:
                                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                                continue
                            # One at a time unless batching: the SDK holds a multi-message receive
                            # open for 0.2 s after the first message, which would delay it.
                            messages = await receiver.receive_messages(
                                max_message_count=self.options.max_message_batch_size if self.trigger.many else 1,
                                max_wait_time=RECEIVE_POLL_SECONDS,
                            )
                            if not messages:
                                continue
                            self._connected()
                            handlers = (
                                [self._handle_batch(receiver, messages)]
                                if self.trigger.many
                                else [self._handle(receiver, message) for message in messages]
                            )
                            for handler in handlers:
                                task = asyncio.create_task(handler)
                                in_flight.add(task)
                                task.add_done_callback(in_flight.discard)
                    finally:
                        if in_flight:
                            await asyncio.wait(in_flight)
            except asyncio.CancelledError:
                for task in in_flight:
                    task.cancel()
                if self._stopping.is_set():
                    return
                raise
            except Exception as exc:
                if self._stopping.is_set():
                    return
                await self._disconnected(exc, backoff)

    # -- one message ---------------------------------------------------------------------------

    async def _handle(self, receiver: Any, message: ServiceBusReceivedMessage) -> None:
        fields = {
            "messageId": message.message_id,
            "correlationId": message.correlation_id,
            "sessionId": message.session_id,
        }
        try:
            data, metadata = single_message(message, self._invoker.worker.protos)
        except Exception:
            log.exception(
                "Function %s: message %s could not be converted for the function; abandoning it.",
                self.spec.name, message.message_id, extra={"functionName": self.spec.name, **fields},
            )
            await self._settle(receiver.abandon_message, message, "abandon", fields)
            return
        try:
            async with self._renewing_lock(receiver, [message]):
                with delivery_span(self.spec, message):
                    await self._invoker.invoke(self.spec, data, metadata,
                                               trace_parent=current_traceparent()
                                               or carrier_of(message.application_properties).get(TRACEPARENT, ""),
                                               log_fields=fields)
        except Exception:
            # The invoker logged the failure. The host abandons an unsettled message on a failure whatever
            # autoCompleteMessages says; the broker counts the delivery and redelivers.
            await self._settle(receiver.abandon_message, message, "abandon", fields)
            return
        if self.options.auto_complete_messages:
            await self._settle(receiver.complete_message, message, "complete", fields)

    async def _handle_batch(self, receiver: Any, messages: list[ServiceBusReceivedMessage]) -> None:
        """``cardinality: many``: one invocation with the list; all complete, or all are abandoned."""
        fields: dict[str, Any] = {"messageCount": len(messages), "sessionId": messages[0].session_id}
        try:
            data, metadata = message_batch(messages, self._invoker.worker.protos)
            async with self._renewing_lock(receiver, messages):
                await self._invoker.invoke(self.spec, data, metadata, log_fields=fields)
        except Exception:
            for message in messages:
                await self._settle(receiver.abandon_message, message, "abandon", fields)
            return
        if self.options.auto_complete_messages:
            for message in messages:
                await self._settle(receiver.complete_message, message, "complete", fields)

    @contextlib.asynccontextmanager
    async def _renewing_lock(self, receiver: Any, messages: list[ServiceBusReceivedMessage]) -> AsyncIterator[None]:
        """Renew the messages' locks while the invocation runs, up to ``maxAutoLockRenewalDuration``.

        A session's messages need nothing: the session lock, renewed while the session is held, covers them.
        """
        renewal = self.options.max_auto_lock_renewal_duration
        if self.trigger.sessions or renewal == 0:
            yield
            return
        task = asyncio.create_task(self._renew_locks(receiver, messages, renewal))
        try:
            yield
        finally:
            task.cancel()

    async def _renew_locks(self, receiver: Any, messages: list[ServiceBusReceivedMessage],
                           renewal: float | None) -> None:
        loop = asyncio.get_running_loop()
        stop_at = None if renewal is None else loop.time() + renewal
        while stop_at is None or loop.time() < stop_at:
            locked_until = min((m.locked_until_utc for m in messages if m.locked_until_utc), default=None)
            left = 0.0 if locked_until is None else (locked_until - datetime.datetime.now(datetime.UTC)).total_seconds()
            # Renew halfway through what is left of the lock (at least every half second, at most every 10 s).
            await asyncio.sleep(min(10.0, max(0.5, left / 2)))
            for message in messages:
                try:
                    await receiver.renew_message_lock(message)
                except Exception as exc:
                    await self._lock_renewal_failed(message, exc)
                    return
        await self._lock_renewal_failed(messages[0], None)

    async def _settle(
        self,
        action: Callable[[ServiceBusReceivedMessage], Awaitable[None]],
        message: ServiceBusReceivedMessage,
        name: str,
        fields: dict[str, Any],
    ) -> None:
        try:
            await action(message)
        except Exception as exc:
            log.warning(
                "Function %s: could not %s message %s (%s: %s); the broker will deliver it again after its "
                "lock expires.", self.spec.name, name, message.message_id, type(exc).__name__, exc,
                extra={"functionName": self.spec.name, **fields},
            )

    async def _lock_renewal_failed(self, renewable: Any, error: Exception | None) -> None:
        log.warning(
            "Function %s: lock renewal stopped for %r (%s); another receiver may get it once the lock expires.",
            self.spec.name, getattr(renewable, "message_id", None) or getattr(renewable, "session_id", renewable),
            error or "maxAutoLockRenewalDuration reached", extra={"functionName": self.spec.name},
        )

    # -- state ---------------------------------------------------------------------------------

    def _connected(self) -> None:
        if self.state in (ListenerState.STARTING, ListenerState.DISCONNECTED):
            was = self.state
            self._set_state(ListenerState.LISTENING)
            self.last_error = None
            if was == ListenerState.DISCONNECTED:
                log.info("Function %s: reconnected to %s", self.spec.name, self.description,
                         extra={"functionName": self.spec.name, "listenerState": str(self.state)})
            else:
                log.info("Function %s: listening on %s", self.spec.name, self.description,
                         extra={"functionName": self.spec.name, "listenerState": str(self.state)})

    async def _disconnected(self, exc: Exception, backoff: Backoff) -> None:
        delay = backoff.next_delay()
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.state != ListenerState.DISCONNECTED and not self._stopping.is_set():
            self._set_state(ListenerState.DISCONNECTED)
            level = logging.WARNING if isinstance(exc, (ServiceBusError, OSError)) else logging.ERROR
            log.log(
                level,
                "Function %s: cannot receive from %s (%s); retrying with backoff until it answers.",
                self.spec.name, self.description, self.last_error,
                exc_info=exc if level == logging.ERROR else None,
                extra={"functionName": self.spec.name, "listenerState": str(self.state)},
            )
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        except TimeoutError:
            pass

    def _set_state(self, state: ListenerState) -> None:
        self.state = state


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception as exc:
        log.debug("Closing a receiver failed: %r", exc)
