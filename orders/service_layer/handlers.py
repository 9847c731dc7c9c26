"""Handlers for intake, processing, dead-lettered orders and the read side.

Errors the callers map: ``TransientError`` (retry the message / answer 503), ``PoisonMessage`` (raised by
``orders.validation`` before a handler runs), ``OrderNotFound`` (404).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from orders.domain.callers import Caller, ensure_may_read_orders, ensure_owner_or_operator
from orders.domain.commands import MarkOrderFailed, ProcessOrder, SubmitOrder
from orders.domain.errors import (
    AcceptanceUnknown,
    DuplicateOrder,
    IdempotencyKeyReused,
    OrderNotFound,
    OrderTooLarge,
    TransientError,
)
from orders.domain.events import OrderStatusChanged
from orders.domain.model import (
    AcceptedRecord,
    OrderMessage,
    OrderOutcome,
    OrderRecord,
    OrderStatus,
    PricedOrder,
    Product,
    Rejection,
    clip_reason,
    correlation_id_for,
    merge_quantities,
    order_size_violations,
    out_of_stock,
    price_order,
    request_fingerprint,
)
from orders.domain.ports import (
    Clock,
    AcceptedRecordStore,
    OrderMessagePublisher,
    StatusEventPublisher,
    SubmissionLimiter,
    UnitOfWork,
    UnitOfWorkFactory,
)
from orders.domain.receipts import accepted_at_of, issue_receipt
from service_platform.notify_tokens import NotifyTokenSigner

log = logging.getLogger("orders.service_layer")


@dataclass(frozen=True, slots=True)
class IntakeOptions:
    """Settings the intake needs, taken from the settings object by the composition root."""

    notify_token_signer: NotifyTokenSigner
    notify_token_ttl_seconds: int
    correlation_ttl_seconds: int
    correlation_id_secret: bytes
    max_lines_per_order: int
    max_units_per_order: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """An order the broker holds: its correlationId and the token that lets a client follow it."""

    correlation_id: str
    notify_token: str
    receipt: str = ""  # proof of acceptance for the statusUrl (orders.domain.receipts)


async def submit_order(
    command: SubmitOrder,
    *,
    publisher: OrderMessagePublisher,
    accepted_records: AcceptedRecordStore,
    limiter: SubmissionLimiter,
    clock: Clock,
    options: IntakeOptions,
) -> Accepted:
    """Accept an order: send it to the ``orders`` queue and answer with its correlationId.

    Refused before anything is sent: an order over the size limits (``OrderTooLarge``), a customer over its
    limits (``TooManyOrders``), a reused Idempotency-Key (``IdempotencyKeyReused``). The broker's
    acknowledgement is the commitment; ``TransientError`` from the publisher means nothing was
    accepted (answer 503), ``AcceptanceUnknown`` that the broker may hold it (answer 503 with the
    correlationId and the Idempotency-Key whose retry is the same order). The ``Accepted`` record is best
    effort: intake keeps accepting orders while Redis is down.
    """
    violations = order_size_violations(command.items, max_lines=options.max_lines_per_order,
                                       max_units=options.max_units_per_order)
    if violations:
        raise OrderTooLarge(violations)
    # Without a client key the intake makes one: if the broker's answer is lost, the client can still retry
    # without risk of a second order, with the key the error answer hands over.
    key = command.idempotency_key or secrets.token_urlsafe(18)
    correlation_id = correlation_id_for(command.customer_id, key, options.correlation_id_secret)
    if command.idempotency_key is not None:
        await _bind_idempotency_key(command, correlation_id, accepted_records, options.correlation_ttl_seconds)
    await _admit(limiter, command.customer_id, correlation_id)
    accepted_at = clock.now()
    message = OrderMessage(
        correlation_id=correlation_id,
        customer_id=command.customer_id,
        currency=command.currency,
        items=command.items,
        accepted_at=accepted_at,
        traceparent=command.traceparent,
    )
    try:
        await publisher.publish(message)
    except AcceptanceUnknown as error:
        log.warning("the broker may or may not hold the order; the client is told to retry with its key",
                    extra={"correlationId": correlation_id, "customerId": command.customer_id})
        if command.idempotency_key is None:  # bind the issued key now, so its retry must be the same order
            await _bind_idempotency_key(command, correlation_id, accepted_records, options.correlation_ttl_seconds)
        raise AcceptanceUnknown(str(error), correlation_id, key) from error
    log.info("order accepted", extra={"correlationId": correlation_id, "customerId": command.customer_id})
    record = AcceptedRecord(correlation_id, command.customer_id, command.currency, accepted_at)
    try:
        await accepted_records.record_accepted(record, options.correlation_ttl_seconds)
    except Exception as error:  # noqa: BLE001 - best effort by contract, whatever the store raises
        log.warning("accepted record not stored: %s", error,
                    extra={"correlationId": correlation_id, "error": type(error).__name__})
    token = options.notify_token_signer.issue(correlation_id, options.notify_token_ttl_seconds,
                                              now=accepted_at.timestamp())
    receipt = issue_receipt(options.correlation_id_secret, correlation_id, command.customer_id, accepted_at)
    return Accepted(correlation_id=correlation_id, notify_token=token, receipt=receipt)


async def _admit(limiter: SubmissionLimiter, customer_id: str, correlation_id: str) -> None:
    """Per-customer limits; when the limiter cannot answer the order is admitted (fail open) and logged."""
    try:
        refusal = await limiter.admit(customer_id, correlation_id)
    except Exception as error:  # noqa: BLE001 - fail open by contract, whatever the store raises
        log.warning("submission limits not checked: %s", error,
                    extra={"correlationId": correlation_id, "error": type(error).__name__})
        return
    if refusal is not None:
        log.info("submission refused by a limit: %s", refusal,
                 extra={"correlationId": correlation_id, "customerId": customer_id})
        raise refusal


def _release(limiter: SubmissionLimiter, customer_id: str | None, correlation_id: str) -> None:
    if customer_id is None:
        return
    try:
        limiter.release(customer_id, correlation_id)
    except Exception as error:  # noqa: BLE001 - the count ages out by itself; never fail processing for it
        log.warning("order not released from the in-flight count: %s", error,
                    extra={"correlationId": correlation_id, "error": type(error).__name__})


async def _bind_idempotency_key(command: SubmitOrder, correlation_id: str, accepted_records: AcceptedRecordStore,
                                ttl_seconds: int) -> None:
    """A key names one order: the same key with another body is refused (``IdempotencyKeyReused``).

    The binding lives as long as the Accepted record. When the store cannot answer, the order is accepted
    without the check (fail open): a different body under a reused key is then dropped by the broker's
    duplicate detection, as before this check existed.
    """
    fingerprint = request_fingerprint(command.customer_id, command.currency, command.items)
    try:
        bound = await accepted_records.claim_idempotency_key(correlation_id, fingerprint, ttl_seconds)
    except Exception as error:  # noqa: BLE001 - fail open by contract, whatever the store raises
        log.warning("Idempotency-Key not checked against earlier bodies: %s", error,
                    extra={"correlationId": correlation_id, "error": type(error).__name__})
        return
    if bound is not None and bound != fingerprint:
        raise IdempotencyKeyReused(correlation_id)


def process_order(
    command: ProcessOrder, *, uow_factory: UnitOfWorkFactory, publisher: StatusEventPublisher,
    limiter: SubmissionLimiter, clock: Clock,
) -> OrderOutcome:
    """Decide, store and announce the outcome of one accepted order; safe under at-least-once delivery.

    A correlationId that already has an order gets the stored outcome back and its event re-emitted, with no
    second stock change. Otherwise order, lines and stock change commit in one transaction. If publishing the
    event fails, ``TransientError`` propagates so the message is redelivered; the stored outcome makes the
    retry cheap and identical.
    """
    outcome, what = _decide_and_store(command, uow_factory, clock)
    # One line per order, written once the event is out (or not): each line costs the processor CPU.
    fields = {"correlationId": command.correlation_id, "status": outcome.status.value, "orderId": outcome.order_id,
              "reason": outcome.reason, "attempt": outcome.attempt}
    try:
        publisher.publish(OrderStatusChanged(outcome))
    except Exception as error:
        log.warning("%s; its status event was not published (%s), the message will be delivered again", what,
                    type(error).__name__, extra=fields)
        raise
    log.info("%s, status published", what, extra=fields)
    _release(limiter, command.customer_id, outcome.correlation_id)
    return outcome


def _decide_and_store(command: ProcessOrder, uow_factory: UnitOfWorkFactory,
                      clock: Clock) -> tuple[OrderOutcome, str]:
    """The order's outcome and how it was reached, for the log line.

    A first delivery is the common case, so it is tried first: reserve, price, insert. The unique key on the
    correlationId turns any other case (a redelivery, a concurrent delivery, a replay's reopened order) into
    ``DuplicateOrder``; the transaction is then rolled back (stock included) and the stored order decides.
    """
    cid = command.correlation_id
    with uow_factory() as uow:
        record = _decide(uow, command, clock)
        try:
            order_id = uow.orders.add(record)
            uow.commit()
            return record.outcome(order_id), "order processed"
        except DuplicateOrder:
            uow.rollback()
        existing = uow.orders.get(cid)
        if existing is None:
            raise TransientError(f"order {cid} was reported stored but cannot be read back")
        if not _awaits(existing, command.attempt):
            return existing, "order already processed"
        record = _decide(uow, command, clock)
        order_id = uow.orders.settle(record)
        if order_id is None:
            # Another delivery of the same replayed message settled it first; its outcome is the answer.
            uow.rollback()
            return uow.orders.get(cid) or existing, "order already processed"
        uow.commit()
    return record.outcome(order_id), "order processed"


def _decide(uow: UnitOfWork, command: ProcessOrder, clock: Clock) -> OrderRecord:
    """The order's record, with its stock taken in ``uow`` when it is ``Completed`` (all lines or none).

    Each reservation hands back the product it took units of, which is all pricing needs. When the prices
    say no (another currency), the units taken are given back. When a SKU is unknown or short, they are given
    back too and the catalog is read to tell which: an unknown SKU or a currency the catalog does not price
    in is named before a shortage, as pricing names them.
    """
    wanted = merge_quantities(command.items)
    reserved: dict[str, Product] = {}
    short: tuple[str, int] | None = None
    for sku, quantity in wanted:
        product = uow.orders.reserve_stock(sku, quantity)
        if product is None:
            short = (sku, quantity)
            break
        reserved[sku] = product
    if short is None:
        decision: PricedOrder | Rejection = price_order(command.currency, command.items, reserved)
        if isinstance(decision, Rejection):
            uow.rollback()
        return _record(command, decision, clock)
    uow.rollback()
    decision = price_order(command.currency, command.items, uow.orders.products(sku for sku, _ in wanted))
    if isinstance(decision, PricedOrder):  # every SKU exists and is priced right: the short one is out of stock
        decision = out_of_stock(*short)
    return _record(command, decision, clock)


def _awaits(stored: OrderOutcome, attempt: int) -> bool:
    """A replay reopened the order (``Accepted`` in SQL) and this message is that attempt's."""
    return stored.status is OrderStatus.ACCEPTED and stored.attempt == attempt


def _record(command: ProcessOrder, decision: PricedOrder | Rejection, clock: Clock) -> OrderRecord:
    if isinstance(decision, Rejection):
        return OrderRecord(command.correlation_id, command.customer_id, OrderStatus.REJECTED, command.currency,
                           total=None, reason=clip_reason(decision.reason), at=clock.now(), attempt=command.attempt)
    return OrderRecord(command.correlation_id, command.customer_id, OrderStatus.COMPLETED, decision.currency,
                       total=decision.total, reason=None, at=clock.now(), lines=decision.lines,
                       attempt=command.attempt)


def mark_order_failed(
    command: MarkOrderFailed, *, uow_factory: UnitOfWorkFactory, publisher: StatusEventPublisher,
    limiter: SubmissionLimiter, clock: Clock,
) -> OrderOutcome:
    """Record a dead-lettered order as ``Failed`` (with the reason) and announce it; idempotent.

    An order that already has an outcome keeps it (a ``Completed`` order is never turned into ``Failed``)
    and that outcome's event is re-emitted, so clients learn the truth either way.
    """
    with uow_factory() as uow:
        outcome = fail_order(uow, command, clock)
        uow.commit()
    announce_failure(command, outcome, publisher=publisher, limiter=limiter)
    return outcome


def fail_order(uow: UnitOfWork, command: MarkOrderFailed, clock: Clock) -> OrderOutcome:
    """``mark_order_failed``'s change, inside the caller's unit of work (the caller commits)."""
    cid = command.correlation_id
    outcome = uow.orders.get(cid)
    if outcome is not None and not _awaits(outcome, command.attempt):
        return outcome
    record = OrderRecord(cid, command.customer_id, OrderStatus.FAILED, command.currency, total=None,
                         reason=clip_reason(command.reason), at=clock.now(), attempt=command.attempt)
    if outcome is not None:  # a replayed attempt that failed again
        order_id = uow.orders.settle(record)
        if order_id is None:
            raise TransientError(f"order {cid} changed while it was being marked Failed; retry")
        return record.outcome(order_id)
    try:
        return record.outcome(uow.orders.add(record))
    except DuplicateOrder:
        raise TransientError(f"order {cid} was stored concurrently while it was being marked Failed; retry") from None


def announce_failure(command: MarkOrderFailed, outcome: OrderOutcome, *, publisher: StatusEventPublisher,
                     limiter: SubmissionLimiter) -> None:
    log.warning("dead-lettered order handled", extra={"correlationId": command.correlation_id,
                                                      "status": outcome.status.value, "reason": outcome.reason,
                                                      "attempt": outcome.attempt})
    publisher.publish(OrderStatusChanged(outcome))
    _release(limiter, outcome.customer_id or command.customer_id, command.correlation_id)


async def get_order_status(
    correlation_id: str, caller: Caller, *, uow_factory: UnitOfWorkFactory, accepted_records: AcceptedRecordStore,
    receipt: str | None = None, receipt_secret: bytes = b"",
) -> OrderOutcome:
    """The order's status, for its customer or an operator: SQL (the source of truth) first, then the
    short-lived ``Accepted`` record. Another customer's order is ``OrderNotFound``, as an unknown id is.

    Raises ``OrderNotFound`` when neither knows the id, and ``TransientError`` when SQL is down, or when SQL has
    no answer yet and the Accepted records cannot be asked (the order may well exist: 503 rather than a false 404).
    The SQL read runs in a worker thread: database drivers block.
    """
    ensure_may_read_orders(caller)
    outcome = await asyncio.to_thread(_read_outcome, uow_factory, correlation_id)
    if outcome is None:
        accepted_at = accepted_at_of(receipt_secret, receipt, correlation_id, caller.customer_id)
        try:
            record = await accepted_records.get_accepted(correlation_id)
        except TransientError:
            if accepted_at is None:
                raise
            record = None  # Redis cannot answer, but the receipt proves the order was accepted
        if record is None and accepted_at is not None:
            record = AcceptedRecord(correlation_id, str(caller.customer_id), "", accepted_at)
        if record is None:
            raise OrderNotFound(correlation_id)
        outcome = record.outcome()
    ensure_owner_or_operator(caller, correlation_id, outcome.customer_id)
    return outcome


def _read_outcome(uow_factory: UnitOfWorkFactory, correlation_id: str) -> OrderOutcome | None:
    with uow_factory(read_only=True) as uow:
        return uow.orders.get(correlation_id)


def list_products(*, uow_factory: UnitOfWorkFactory) -> list[Product]:
    """The catalog, ordered by SKU (synchronous: call it from a thread when on an event loop)."""
    with uow_factory(read_only=True) as uow:
        return uow.orders.list_products()
