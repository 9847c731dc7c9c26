"""Handlers for dead letters: keep each one, and let an operator replay, repair or discard it.

Replaying gives the dead letter's ``Failed`` order a new attempt: in one transaction the order becomes
``Accepted`` at attempt n+1 and the dead letter ``Replayed`` (a conditional update each, so two operators
or two clicks start one attempt), then the order is sent again to the ``orders`` queue in its customer's
session. If that send fails, the same request again sends it again (same message id: the queue keeps one).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from orders.domain.callers import Caller, ensure_may_operate
from orders.domain.commands import MarkOrderFailed, ProcessOrder
from orders.domain.dead_letters import (
    ActionKind,
    DeadLetter,
    DeadLetterAction,
    DeadLetterFilter,
    DeadLetterState,
    RepairedOrder,
)
from orders.domain.errors import ActionRefused, DeadLetterNotFound, PoisonMessage
from orders.domain.events import OrderStatusChanged
from orders.domain.model import OrderMessage, OrderOutcome, OrderRecord, OrderStatus
from orders.domain.ports import (
    Clock,
    OrderMessagePublisher,
    StatusEventPublisher,
    SubmissionLimiter,
    UnitOfWork,
    UnitOfWorkFactory,
)
from orders.service_layer.handlers import announce_failure, fail_order

log = logging.getLogger("orders.service_layer")

#: Reads a kept body as an order (``PoisonMessage`` when it cannot be); writes an order as a queue body.
ReadOrder = Callable[[bytes], ProcessOrder]
WriteOrder = Callable[[OrderMessage], bytes]


@dataclass(frozen=True, slots=True)
class KeepDeadLetter:
    """Store a message the dead-letter queue delivered, and mark its order ``Failed`` when one is named."""

    dead_letter: DeadLetter
    failed: MarkOrderFailed | None


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay or repair did: the order's new attempt, or (``started`` False) the one started before."""

    dead_letter_id: int
    correlation_id: str
    attempt: int
    started: bool
    sent: bool


@dataclass(frozen=True, slots=True)
class DeadLetterDetail:
    dead_letter: DeadLetter
    actions: list[DeadLetterAction]
    order: OrderOutcome | None


def keep_dead_letter(command: KeepDeadLetter, *, uow_factory: UnitOfWorkFactory, publisher: StatusEventPublisher,
                     limiter: SubmissionLimiter, clock: Clock) -> OrderOutcome | None:
    """Keep the dead letter and fail its order in one transaction, then announce the order's status.

    Idempotent: a redelivered dead letter is kept once, and its order's stored outcome is announced again.
    Nothing is completed from the dead-letter queue unless this returns (the trigger lets errors through).
    """
    dead_letter = command.dead_letter
    with uow_factory() as uow:
        kept = uow.dead_letters.keep(dead_letter)
        outcome = None if command.failed is None else fail_order(uow, command.failed, clock)
        uow.commit()
    log.warning("dead letter kept" if kept else "dead letter delivered again; kept already",
                extra={"correlationId": dead_letter.correlation_id, "messageId": dead_letter.message_id,
                       "deadLetterReason": dead_letter.reason, "attempt": dead_letter.attempt})
    if command.failed is not None and outcome is not None:
        announce_failure(command.failed, outcome, publisher=publisher, limiter=limiter)
    return outcome


def list_dead_letters(caller: Caller, criteria: DeadLetterFilter, *,
                      uow_factory: UnitOfWorkFactory) -> list[DeadLetter]:
    """Synchronous (the driver blocks): call it from a thread when on an event loop."""
    ensure_may_operate(caller)
    with uow_factory(read_only=True) as uow:
        return uow.dead_letters.find(criteria)


def show_dead_letter(caller: Caller, dead_letter_id: int, *, uow_factory: UnitOfWorkFactory,
                     read_order: ReadOrder) -> DeadLetterDetail:
    ensure_may_operate(caller)
    with uow_factory(read_only=True) as uow:
        dead_letter = _get(uow, dead_letter_id)
        correlation_id = _order_of(dead_letter, read_order)
        order = None if correlation_id is None else uow.orders.get(correlation_id)
        return DeadLetterDetail(dead_letter, uow.dead_letters.actions(dead_letter_id), order)


async def replay_dead_letter(
    caller: Caller, dead_letter_id: int, why: str, *, repaired: RepairedOrder | None = None,
    uow_factory: UnitOfWorkFactory, publisher: OrderMessagePublisher, status_publisher: StatusEventPublisher,
    clock: Clock, read_order: ReadOrder, write_order: WriteOrder,
) -> Replayed:
    """Give the dead letter's ``Failed`` order a new attempt (``repaired``: with a corrected body).

    Refused (``ActionRefused``) for a discarded dead letter, an order that is ``Completed`` or ``Rejected``
    (never replayed) or already being retried, and a body that cannot be read as an order unless it is
    repaired. A dead letter replayed before answers with that attempt (``started`` False) and is sent
    again only while that attempt waits in ``Accepted``. ``TransientError`` when SQL or the broker is down:
    the same request again is safe.
    """
    ensure_may_operate(caller)
    plan = await asyncio.to_thread(_claim_attempt, uow_factory, caller, dead_letter_id, why, repaired, clock,
                                   read_order, write_order)
    if plan.message is not None:
        await publisher.publish(plan.message)
        if plan.result.started:
            await asyncio.to_thread(_announce_reopened, status_publisher, plan.reopened)
    log.warning("dead letter replayed" if plan.result.started else "dead letter replayed before",
                extra={"correlationId": plan.result.correlation_id, "attempt": plan.result.attempt,
                       "deadLetterId": dead_letter_id, "actor": _actor(caller), "sent": plan.result.sent})
    return plan.result


def discard_dead_letter(caller: Caller, dead_letter_id: int, why: str, *, uow_factory: UnitOfWorkFactory,
                        clock: Clock) -> DeadLetter:
    """Keep the record but never retry it; the order's status stays as it is. Idempotent. Synchronous."""
    ensure_may_operate(caller)
    _require_why(why)
    with uow_factory() as uow:
        dead_letter = _get(uow, dead_letter_id, lock=True)
        if dead_letter.state is DeadLetterState.REPLAYED:
            raise ActionRefused(f"dead letter {dead_letter_id} was replayed (attempt {dead_letter.replay_attempt}); "
                                "its order's outcome stands and there is nothing left to discard")
        if dead_letter.state is DeadLetterState.KEPT:
            if not uow.dead_letters.mark(dead_letter_id, DeadLetterState.KEPT, DeadLetterState.DISCARDED):
                raise ActionRefused(f"dead letter {dead_letter_id} changed while it was being discarded: show it "
                                    "again and decide")
            uow.dead_letters.record(DeadLetterAction(dead_letter_id, ActionKind.DISCARD, _actor(caller), why,
                                                     clock.now(), correlation_id=dead_letter.correlation_id))
            uow.commit()
            log.warning("dead letter discarded", extra={"correlationId": dead_letter.correlation_id,
                                                        "deadLetterId": dead_letter_id, "actor": _actor(caller)})
        return _get(uow, dead_letter_id)


@dataclass(frozen=True, slots=True)
class _Plan:
    result: Replayed
    message: OrderMessage | None  # what to send, if anything (``result.sent`` says the same)
    reopened: OrderOutcome | None = None


def _message(order: ProcessOrder, attempt: int) -> OrderMessage:
    return OrderMessage(order.correlation_id, order.customer_id, order.currency, order.items, order.accepted_at,
                        attempt=attempt)


def _claim_attempt(uow_factory: UnitOfWorkFactory, caller: Caller, dead_letter_id: int, why: str,
                   repaired: RepairedOrder | None, clock: Clock, read_order: ReadOrder,
                   write_order: WriteOrder) -> _Plan:
    _require_why(why)
    with uow_factory() as uow:
        # Locked first: a second operator's replay waits here, then finds it Replayed.
        dead_letter = _get(uow, dead_letter_id, lock=True)
        if dead_letter.state is DeadLetterState.REPLAYED:
            return _replayed_before(uow, dead_letter, read_order)
        if dead_letter.state is DeadLetterState.DISCARDED:
            raise ActionRefused(f"dead letter {dead_letter_id} was discarded; it is never replayed")
        order = _order_to_send(dead_letter, repaired, read_order, clock)
        stored = uow.orders.get(order.correlation_id)
        if stored is not None and stored.customer_id not in (None, order.customer_id):
            raise ActionRefused(f"order {order.correlation_id} belongs to customer {stored.customer_id}; a repair "
                                "cannot move it to another customer")
        if stored is not None and stored.status in (OrderStatus.COMPLETED, OrderStatus.REJECTED):
            raise ActionRefused(f"order {order.correlation_id} is {stored.status.value}: only a Failed order is "
                                "replayed; discard this dead letter instead")
        if stored is not None and stored.status is OrderStatus.ACCEPTED:
            raise ActionRefused(f"order {order.correlation_id} is being processed again already (attempt "
                                f"{stored.attempt}); wait for its outcome")
        now = clock.now()
        attempt = (stored.attempt if stored is not None else dead_letter.attempt) + 1
        message = _message(order, attempt)
        if not uow.dead_letters.mark(dead_letter_id, DeadLetterState.KEPT, DeadLetterState.REPLAYED,
                                     replay_attempt=attempt, replayed_body=write_order(message)):
            uow.rollback()  # another operator's replay of this dead letter committed first
            return _replayed_before(uow, _get(uow, dead_letter_id), read_order)
        if stored is None:
            _add_accepted(uow, message, now)
        elif not uow.orders.reopen(order.correlation_id, stored.attempt, now):
            raise ActionRefused(f"order {order.correlation_id} changed while it was being replayed: show the dead "
                                "letter again and decide")
        kind = ActionKind.REPLAY if repaired is None else ActionKind.REPAIR
        uow.dead_letters.record(DeadLetterAction(dead_letter_id, kind, _actor(caller), why, now, attempt=attempt,
                                                 correlation_id=order.correlation_id))
        reopened = uow.orders.get(order.correlation_id)
        uow.commit()
    return _Plan(Replayed(dead_letter_id, order.correlation_id, attempt, started=True, sent=True), message, reopened)


def _replayed_before(uow: UnitOfWork, dead_letter: DeadLetter, read_order: ReadOrder) -> _Plan:
    assert dead_letter.id is not None and dead_letter.replay_attempt is not None
    sent = read_order(dead_letter.replayed_body or dead_letter.body)
    stored = uow.orders.get(sent.correlation_id)
    waiting = stored is not None and stored.status is OrderStatus.ACCEPTED and stored.attempt == dead_letter.replay_attempt
    message = _message(sent, dead_letter.replay_attempt) if waiting else None
    return _Plan(Replayed(dead_letter.id, sent.correlation_id, dead_letter.replay_attempt, started=False,
                          sent=waiting), message)


def _order_to_send(dead_letter: DeadLetter, repaired: RepairedOrder | None, read_order: ReadOrder,
                   clock: Clock) -> ProcessOrder:
    if repaired is None:
        try:
            return read_order(dead_letter.body)
        except PoisonMessage as poison:
            raise ActionRefused(f"dead letter {dead_letter.id}'s body cannot be read as an order ({poison.reason}): "
                                "repair it with a corrected body, or discard it") from None
    correlation_id = dead_letter.correlation_id
    if correlation_id is None:
        try:
            correlation_id = read_order(dead_letter.body).correlation_id
        except PoisonMessage:
            correlation_id = str(uuid.uuid4())  # no order was ever named: the repaired one is a new order
    return ProcessOrder(correlation_id, repaired.customer_id, repaired.currency, repaired.items, clock.now())


def _add_accepted(uow: UnitOfWork, message: OrderMessage, now: datetime) -> None:
    uow.orders.add(OrderRecord(message.correlation_id, message.customer_id, OrderStatus.ACCEPTED, message.currency,
                               total=None, reason=None, at=now, attempt=message.attempt))


def _announce_reopened(publisher: StatusEventPublisher, outcome: OrderOutcome | None) -> None:
    """Best effort: a client that follows the order reads its status on subscribing anyway."""
    if outcome is None:
        return
    try:
        publisher.publish(OrderStatusChanged(outcome))
    except Exception as error:  # noqa: BLE001 - the replay stands whatever the status queue says
        log.warning("status event of a replayed order not sent: %s", error,
                    extra={"correlationId": outcome.correlation_id, "attempt": outcome.attempt})


def _order_of(dead_letter: DeadLetter, read_order: ReadOrder) -> str | None:
    if dead_letter.correlation_id is not None:
        return dead_letter.correlation_id
    for body in (dead_letter.replayed_body, dead_letter.body):
        if body is not None:
            try:
                return read_order(body).correlation_id
            except PoisonMessage:
                pass
    return None


def _get(uow: UnitOfWork, dead_letter_id: int, *, lock: bool = False) -> DeadLetter:
    dead_letter = uow.dead_letters.get(dead_letter_id, lock=lock)
    if dead_letter is None:
        raise DeadLetterNotFound(dead_letter_id)
    return dead_letter


def _require_why(why: str) -> None:
    if not why.strip():
        raise ActionRefused("say why (the 'why' field): it is recorded with the action for whoever looks later")


def _actor(caller: Caller) -> str:
    return caller.name or caller.customer_id or "unknown operator"
