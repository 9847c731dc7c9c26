"""The order pipeline's use cases against in-memory fakes: intake, processing under redelivery,
dead-lettered orders and the read side."""

import asyncio
import dataclasses
import functools
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
import pytest

from orders.json_contracts import status_json
from orders.domain.errors import AcceptanceUnknown, Forbidden, IdempotencyKeyReused, OrderTooLarge, TooManyOrders
from orders.domain import (
    MarkOrderFailed,
    OrderLine,
    OrderNotFound,
    OrderStatus,
    ProcessOrder,
    Product,
    SubmitOrder,
    TransientError,
)
from orders.domain.callers import Caller, Permission
from service_platform.notify_tokens import NotifyTokenSigner, NotifyTokenVerifier
from orders.service_layer import (
    IntakeOptions,
    get_order_status,
    list_products,
    mark_order_failed,
    process_order,
    submit_order,
)
from tests.fakes.orders import (
    FakeClock,
    FakeAcceptedRecordStore,
    FakeDatabase,
    FakeMessagePublisher,
    FakeStatusPublisher,
    FakeSubmissionLimiter,
    FakeUnitOfWorkFactory,
    statuses,
)

SECRET = b"test-secret"
OPTIONS = IntakeOptions(notify_token_signer=NotifyTokenSigner("k1", SECRET), notify_token_ttl_seconds=600,
                        correlation_ttl_seconds=90_000, correlation_id_secret=b"correlation-secret",
                        max_lines_per_order=3, max_units_per_order=20)
VERIFIER = NotifyTokenVerifier({"k1": SECRET})
CUSTOMER = Caller("c-1", frozenset({Permission.OWN_ORDERS}))
LIMITS = FakeSubmissionLimiter()  # permissive: most tests here are not about limits
CID = "0d3c1d4e-6f10-4c1c-9a3b-5f2f7f0f9c11"


@pytest.fixture
def database():
    return FakeDatabase(products={
        "SKU-1": Product("SKU-1", "Espresso beans", Decimal("18.90"), "EUR", 10),
        "SKU-2": Product("SKU-2", "Filters", Decimal("4.99"), "EUR", 3),
        "SKU-0": Product("SKU-0", "Sold out", Decimal("44.00"), "EUR", 0),
    })


@pytest.fixture
def uow_factory(database):
    return FakeUnitOfWorkFactory(database)


@pytest.fixture
def events():
    return FakeStatusPublisher()


@pytest.fixture
def clock():
    return FakeClock()


def order(*lines, cid=CID, currency="EUR"):
    return ProcessOrder(cid, "c-1", currency, tuple(OrderLine(sku, qty) for sku, qty in lines),
                        datetime(2026, 1, 2, tzinfo=UTC))


def process(command, uow_factory, events, clock):
    return process_order(command, uow_factory=uow_factory, publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)


# -- intake ------------------------------------------------------------------------------------------------

async def test_submit_publishes_the_message_and_answers_with_everything_the_client_needs(clock):
    publisher, registry = FakeMessagePublisher(), FakeAcceptedRecordStore()
    command = SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 2),), traceparent="00-t-01")
    accepted = await submit_order(command, publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)

    [message] = publisher.messages
    assert message.correlation_id == accepted.correlation_id
    assert message.items == (OrderLine("SKU-1", 2),) and message.accepted_at == clock.now()
    assert message.traceparent == "00-t-01"
    record, ttl = registry.records[accepted.correlation_id]
    assert ttl == 90_000 and record.customer_id == "c-1"
    VERIFIER.verify(accepted.notify_token, accepted.correlation_id, now=clock.now().timestamp() + 599)


async def test_the_same_idempotency_key_gives_the_same_correlation_id(clock):
    publisher, registry = FakeMessagePublisher(), FakeAcceptedRecordStore()
    command = SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 2),), idempotency_key="retry-me")
    first = await submit_order(command, publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    second = await submit_order(command, publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    other = await submit_order(SubmitOrder("c-2", "EUR", command.items, idempotency_key="retry-me"),
                               publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    assert first.correlation_id == second.correlation_id != other.correlation_id
    assert [m.deduplication_key for m in publisher.messages] == [first.correlation_id] * 2 + [other.correlation_id]


async def test_nothing_is_accepted_when_the_broker_cannot_take_the_order(clock):
    publisher, registry = FakeMessagePublisher(), FakeAcceptedRecordStore()
    publisher.down = True
    with pytest.raises(TransientError):
        await submit_order(SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),)), publisher=publisher,
                           accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    assert registry.records == {}


async def test_an_unknown_outcome_hands_over_a_key_whose_retry_is_the_same_order(clock):
    publisher, registry = FakeMessagePublisher(), FakeAcceptedRecordStore()
    publisher.silent = True
    plain = SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 2),))  # the client sent no Idempotency-Key
    with pytest.raises(AcceptanceUnknown) as unknown:
        await submit_order(plain, publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock,
                           options=OPTIONS)
    assert unknown.value.correlation_id == publisher.messages[0].correlation_id
    assert unknown.value.idempotency_key
    publisher.silent = False
    retry = dataclasses.replace(plain, idempotency_key=unknown.value.idempotency_key)
    accepted = await submit_order(retry, publisher=publisher, accepted_records=registry, limiter=LIMITS,
                                  clock=clock, options=OPTIONS)
    assert accepted.correlation_id == unknown.value.correlation_id
    # The same message id twice: the broker's duplicate detection keeps one.
    assert {m.deduplication_key for m in publisher.messages} == {unknown.value.correlation_id}
    with pytest.raises(IdempotencyKeyReused):  # the issued key is bound to this order's body
        await submit_order(dataclasses.replace(retry, items=(OrderLine("SKU-1", 3),)), publisher=publisher,
                           accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)


async def test_intake_keeps_accepting_orders_while_the_registry_is_down(clock, caplog):
    publisher, registry = FakeMessagePublisher(), FakeAcceptedRecordStore()
    registry.down = True
    with caplog.at_level(logging.WARNING, logger="orders.service_layer"):
        accepted = await submit_order(SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),)), publisher=publisher,
                                      accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    assert [m.correlation_id for m in publisher.messages] == [accepted.correlation_id]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.correlationId == accepted.correlation_id


async def test_the_same_key_with_another_body_is_refused_before_anything_is_sent(clock):
    publisher, registry = FakeMessagePublisher(), FakeAcceptedRecordStore()
    first = SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 2), OrderLine("SKU-2", 1)), idempotency_key="k-1")
    reordered = SubmitOrder("c-1", "EUR", (OrderLine("SKU-2", 1), OrderLine("SKU-1", 1), OrderLine("SKU-1", 1)),
                            idempotency_key="k-1")
    other = SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 3),), idempotency_key="k-1")
    accepted = await submit_order(first, publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    again = await submit_order(reordered, publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock,
                               options=OPTIONS)
    with pytest.raises(IdempotencyKeyReused) as refused:
        await submit_order(other, publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    assert again.correlation_id == accepted.correlation_id == refused.value.correlation_id
    assert len(publisher.messages) == 2  # the refused body never reached the broker
    # Another customer may use the same key for anything.
    await submit_order(SubmitOrder("c-2", "EUR", other.items, idempotency_key="k-1"), publisher=publisher,
                       accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)


async def test_a_key_is_accepted_unchecked_while_the_store_is_down(clock, caplog):
    publisher, registry = FakeMessagePublisher(), FakeAcceptedRecordStore()
    registry.down = True
    with caplog.at_level(logging.WARNING, logger="orders.service_layer"):
        accepted = await submit_order(SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),), idempotency_key="k"),
                                      publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    assert [m.correlation_id for m in publisher.messages] == [accepted.correlation_id]
    assert any("not checked" in r.getMessage() for r in caplog.records)


# -- processing --------------------------------------------------------------------------------------------

def test_a_fulfillable_order_completes_reserving_stock_and_announcing_it(database, uow_factory, events, clock):
    outcome = process(order(("SKU-1", 2), ("SKU-2", 3)), uow_factory, events, clock)
    assert outcome.status is OrderStatus.COMPLETED
    assert outcome.order_id == 1
    assert outcome.total == Decimal("52.77")
    assert (database.stock("SKU-1"), database.stock("SKU-2")) == (8, 0)
    [event] = events.events
    assert event.outcome.total == Decimal("52.77") and event.outcome.order_id == 1


def test_a_redelivered_order_gets_the_same_answer_without_touching_stock(database, uow_factory, events, clock):
    first = process(order(("SKU-1", 2)), uow_factory, events, clock)
    clock.advance(60)
    again = process(order(("SKU-1", 2)), uow_factory, events, clock)
    assert again == first
    assert database.stock("SKU-1") == 8
    assert len(database.orders) == 1
    assert [e.deduplication_key for e in events.events] == [f"{CID}:Completed"] * 2
    assert events.events[0] == events.events[1]


def test_a_concurrent_delivery_that_commits_first_wins_and_its_answer_is_returned(database, uow_factory, events,
                                                                                  clock):
    winner = []
    database.before_next_add = lambda: winner.append(process(order(("SKU-1", 2)), uow_factory, events, clock))
    outcome = process(order(("SKU-1", 2)), uow_factory, events, clock)
    assert outcome == winner[0]
    assert database.stock("SKU-1") == 8  # the loser's reservation was rolled back
    assert len(database.orders) == 1
    assert [e.outcome.order_id for e in events.events] == [outcome.order_id] * 2


def test_unknown_sku_rejects_and_the_rejection_is_remembered(database, uow_factory, events, clock):
    outcome = process(order(("SKU-1", 1), ("SKU-404", 1)), uow_factory, events, clock)
    assert outcome.status is OrderStatus.REJECTED
    assert outcome.reason == "unknown SKU: SKU-404"
    assert outcome.order_id is None and outcome.total is None
    assert database.stock("SKU-1") == 10
    database.products["SKU-404"] = Product("SKU-404", "Late arrival", Decimal("1.00"), "EUR", 5)
    assert process(order(("SKU-1", 1), ("SKU-404", 1)), uow_factory, events, clock) == outcome
    assert statuses(events.events) == [OrderStatus.REJECTED] * 2


def test_stock_is_reserved_for_all_lines_or_none(database, uow_factory, events, clock):
    outcome = process(order(("SKU-1", 4), ("SKU-2", 2), ("SKU-2", 2)), uow_factory, events, clock)
    assert outcome.status is OrderStatus.REJECTED
    assert outcome.reason == "not enough stock for SKU SKU-2: 4 requested"
    assert (database.stock("SKU-1"), database.stock("SKU-2")) == (10, 3)


def test_empty_stock_rejects(database, uow_factory, events, clock):
    outcome = process(order(("SKU-0", 1)), uow_factory, events, clock)
    assert (outcome.status, outcome.reason) == (OrderStatus.REJECTED, "not enough stock for SKU SKU-0: 1 requested")


def test_currency_must_match_the_catalog(database, uow_factory, events, clock):
    outcome = process(order(("SKU-1", 1), currency="USD"), uow_factory, events, clock)
    assert outcome.status is OrderStatus.REJECTED and "SKU-1 is priced in EUR" in outcome.reason
    assert database.stock("SKU-1") == 10


def test_if_the_event_cannot_be_sent_the_retry_sends_it_with_one_stock_change(database, uow_factory, events,
                                                                              clock):
    events.fail_next = 1
    with pytest.raises(TransientError):
        process(order(("SKU-1", 3)), uow_factory, events, clock)
    outcome = process(order(("SKU-1", 3)), uow_factory, events, clock)
    assert outcome.status is OrderStatus.COMPLETED
    assert database.stock("SKU-1") == 7
    assert statuses(events.events) == [OrderStatus.COMPLETED]


def test_each_processed_order_logs_one_line_with_its_outcome_and_a_warning_when_its_event_is_not_sent(
        uow_factory, events, clock, caplog):
    with caplog.at_level(logging.INFO, logger="orders.service_layer"):
        process(order(("SKU-1", 1)), uow_factory, events, clock)
        events.fail_next = 1
        with pytest.raises(TransientError):
            process(order(("SKU-1", 1)), uow_factory, events, clock)
    first, second = caplog.records
    assert first.getMessage().startswith("order processed, status published")
    assert (first.correlationId, first.status, first.orderId, first.attempt) == (CID, "Completed", 1, 1)
    assert second.levelno == logging.WARNING and second.correlationId == CID and second.orderId == 1
    assert second.getMessage().startswith("order already processed; its status event was not published")


def test_database_down_is_transient_and_changes_nothing(database, uow_factory, events, clock):
    database.down = True
    with pytest.raises(TransientError):
        process(order(("SKU-1", 3)), uow_factory, events, clock)
    assert events.events == [] and database.stock("SKU-1") == 10


# -- dead-lettered orders ----------------------------------------------------------------------------------

def test_a_dead_lettered_order_is_marked_failed_once(database, uow_factory, events, clock):
    command = MarkOrderFailed(CID, "message body is not valid JSON")
    outcome = mark_order_failed(command, uow_factory=uow_factory, publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    assert (outcome.status, outcome.reason, outcome.order_id) == (OrderStatus.FAILED, command.reason, None)
    clock.advance(5)
    assert mark_order_failed(command, uow_factory=uow_factory, publisher=events, limiter=FakeSubmissionLimiter(), clock=clock) == outcome
    assert len(database.orders) == 1
    assert statuses(events.events) == [OrderStatus.FAILED] * 2
    # A later redelivery of the order itself gets the same answer.
    assert process(order(("SKU-1", 1)), uow_factory, events, clock) == outcome
    assert database.stock("SKU-1") == 10


def test_a_completed_order_is_never_turned_into_failed(database, uow_factory, events, clock):
    completed = process(order(("SKU-1", 1)), uow_factory, events, clock)
    outcome = mark_order_failed(MarkOrderFailed(CID, "MaxDeliveryCountExceeded"), uow_factory=uow_factory,
                                publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    assert outcome == completed
    assert statuses(events.events) == [OrderStatus.COMPLETED] * 2


def test_a_runaway_reason_is_clipped(uow_factory, events, clock):
    outcome = mark_order_failed(MarkOrderFailed(CID, "x" * 5000), uow_factory=uow_factory, publisher=events,
                                limiter=FakeSubmissionLimiter(), clock=clock)
    assert len(outcome.reason) == 1000


# -- read side ---------------------------------------------------------------------------------------------

async def test_status_comes_from_sql_first_then_from_the_accepted_record(uow_factory, events, clock):
    registry = FakeAcceptedRecordStore()
    with pytest.raises(OrderNotFound):
        await get_order_status(CID, CUSTOMER, uow_factory=uow_factory, accepted_records=registry)

    publisher = FakeMessagePublisher()
    accepted = await submit_order(SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),), idempotency_key="k"),
                                  publisher=publisher, accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    cid = accepted.correlation_id
    status = await get_order_status(cid, CUSTOMER, uow_factory=uow_factory, accepted_records=registry)
    assert status_json(status) == {"correlationId": cid, "status": "Accepted", "orderId": None, "total": None,
                                     "currency": "EUR", "reason": None, "updatedAt": "2026-01-02T03:04:05.000Z",
                                     "attempt": 1}

    process(order(("SKU-1", 1), cid=cid), uow_factory, events, clock)
    status = await get_order_status(cid, CUSTOMER, uow_factory=uow_factory, accepted_records=registry)
    assert (status.status, status.order_id, status.total) == (OrderStatus.COMPLETED, 1, Decimal("18.90"))


async def test_status_is_unavailable_rather_than_missing_when_the_registry_is_down(uow_factory):
    registry = FakeAcceptedRecordStore()
    registry.down = True
    with pytest.raises(TransientError):
        await get_order_status(CID, CUSTOMER, uow_factory=uow_factory, accepted_records=registry)


@pytest.mark.parametrize("redis", ["down", "record missing"])
async def test_with_its_receipt_an_accepted_order_is_never_not_found(uow_factory, clock, redis):
    """Redis down, a skipped write or an evicted key between the 202 and processing: the receipt from the
    statusUrl still proves the order was accepted (and only to its customer)."""
    registry = FakeAcceptedRecordStore()
    accepted = await submit_order(SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),)),
                                  publisher=FakeMessagePublisher(), accepted_records=registry, limiter=LIMITS,
                                  clock=clock, options=OPTIONS)
    registry.records.clear()
    registry.down = redis == "down"
    read = functools.partial(get_order_status, accepted.correlation_id, uow_factory=uow_factory,
                             accepted_records=registry, receipt_secret=OPTIONS.correlation_id_secret)
    status = await read(CUSTOMER, receipt=accepted.receipt)
    assert (status.status, status.updated_at) == (OrderStatus.ACCEPTED, clock.now())
    with pytest.raises(TransientError if redis == "down" else OrderNotFound):
        await read(CUSTOMER)  # without the receipt: unknown
    with pytest.raises(TransientError if redis == "down" else OrderNotFound):
        await read(Caller("c-2", frozenset({Permission.OWN_ORDERS})), receipt=accepted.receipt)
    with pytest.raises(TransientError if redis == "down" else OrderNotFound):
        await read(CUSTOMER, receipt=accepted.receipt[:-1] + ("A" if accepted.receipt[-1] != "A" else "B"))


async def test_status_reads_do_not_block_the_event_loop(uow_factory):
    """The SQL read runs in a worker thread: a ticker on the loop keeps running while it happens."""
    registry = FakeAcceptedRecordStore()
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    with pytest.raises(OrderNotFound):
        await get_order_status(CID, CUSTOMER, uow_factory=uow_factory, accepted_records=registry)
    task.cancel()
    assert ticks > 0


# -- authorisation and limits ------------------------------------------------------------------------------

async def test_another_customer_reads_an_order_as_absent_and_an_operator_reads_it(uow_factory, events, clock):
    registry = FakeAcceptedRecordStore()
    accepted = await submit_order(SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),)), publisher=FakeMessagePublisher(),
                                  accepted_records=registry, limiter=LIMITS, clock=clock, options=OPTIONS)
    cid = accepted.correlation_id
    other = Caller("c-2", frozenset({Permission.OWN_ORDERS}))
    operator = Caller(None, frozenset({Permission.READ_ANY_ORDER}))
    for stage in ("accepted", "processed"):
        with pytest.raises(OrderNotFound) as absent:
            await get_order_status(cid, other, uow_factory=uow_factory, accepted_records=registry)
        assert str(absent.value) == str(OrderNotFound(cid))  # the same answer as for an id never issued
        assert (await get_order_status(cid, operator, uow_factory=uow_factory,
                                       accepted_records=registry)).correlation_id == cid
        if stage == "accepted":
            process(order(("SKU-1", 1), cid=cid), uow_factory, events, clock)


async def test_a_caller_without_read_permission_is_forbidden(uow_factory):
    with pytest.raises(Forbidden):
        await get_order_status(CID, Caller(None, frozenset({Permission.SUBMIT_ON_BEHALF})), uow_factory=uow_factory,
                               accepted_records=FakeAcceptedRecordStore())


@pytest.mark.parametrize("lines, complaint", [
    ((("SKU-1", 21),), "adds up to 21 units; at most 20"),
    ((("SKU-1", 1000),) * 100, "adds up to 100000 units; at most 20"),
    ((("SKU-1", 1), ("SKU-2", 1), ("SKU-3", 1), ("SKU-4", 1)), "has 4 different SKUs; at most 3"),
])
async def test_orders_over_the_size_limits_are_refused_before_anything_is_sent(clock, lines, complaint):
    publisher = FakeMessagePublisher()
    with pytest.raises(OrderTooLarge) as refused:
        await submit_order(SubmitOrder("c-1", "EUR", tuple(OrderLine(sku, qty) for sku, qty in lines)),
                           publisher=publisher, accepted_records=FakeAcceptedRecordStore(), limiter=LIMITS,
                           clock=clock, options=OPTIONS)
    assert complaint in str(refused.value) and publisher.messages == []


async def test_a_repeated_sku_counts_as_one_line(clock):
    accepted = await submit_order(SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),) * 10),
                                  publisher=FakeMessagePublisher(), accepted_records=FakeAcceptedRecordStore(),
                                  limiter=LIMITS, clock=clock, options=OPTIONS)
    assert accepted.correlation_id


async def test_orders_in_flight_are_limited_and_released_once_processed(uow_factory, events, clock):
    limiter, publisher, registry = FakeSubmissionLimiter(max_in_flight=2), FakeMessagePublisher(), FakeAcceptedRecordStore()

    async def submit(key):
        return await submit_order(SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),), idempotency_key=key),
                                  publisher=publisher, accepted_records=registry, limiter=limiter, clock=clock,
                                  options=OPTIONS)

    first, _ = await submit("a"), await submit("b")
    with pytest.raises(TooManyOrders) as refused:
        await submit("c")
    assert refused.value.retry_after_seconds == 5 and len(publisher.messages) == 2
    await submit("a")  # a retry of an order already counted is not refused
    process_order(order(("SKU-1", 1), cid=first.correlation_id), uow_factory=uow_factory, publisher=events,
                  limiter=limiter, clock=clock)
    await submit("c")
    assert len(publisher.messages) == 4


async def test_intake_admits_orders_while_the_limiter_is_down(clock, caplog):
    limiter = FakeSubmissionLimiter(max_in_flight=0)
    limiter.down = True
    with caplog.at_level(logging.WARNING, logger="orders.service_layer"):
        await submit_order(SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),)), publisher=FakeMessagePublisher(),
                           accepted_records=FakeAcceptedRecordStore(), limiter=limiter, clock=clock, options=OPTIONS)
    assert any("limits not checked" in record.getMessage() for record in caplog.records)


async def test_idempotency_key_ids_depend_on_the_server_secret(clock):
    """Without the secret nobody can compute another customer's correlationId from a guessable key."""
    command = SubmitOrder("c-1", "EUR", (OrderLine("SKU-1", 1),), idempotency_key="first-try")
    ids = []
    for secret in (b"secret-a", b"secret-b"):
        options = dataclasses.replace(OPTIONS, correlation_id_secret=secret)
        accepted = await submit_order(command, publisher=FakeMessagePublisher(),
                                      accepted_records=FakeAcceptedRecordStore(), limiter=LIMITS, clock=clock,
                                      options=options)
        ids.append(accepted.correlation_id)
    assert ids[0] != ids[1]
    assert uuid.UUID(ids[0]).version == 4  # indistinguishable from a random id


def test_products_are_listed_by_sku(uow_factory):
    assert [p.sku for p in list_products(uow_factory=uow_factory)] == ["SKU-0", "SKU-1", "SKU-2"]
