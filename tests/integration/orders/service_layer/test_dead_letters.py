"""Dead letters kept, replayed, repaired and discarded through the service layer, on real SQLite and
PostgreSQL (the broker is the in-memory publisher of tests/fakes: the end-to-end tests use the real one)."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from orders.adapters.servicebus_publishers import order_message_body
from orders.adapters.sql import SqlUnitOfWork, create_engine_for, migrate, seed_catalog
from orders.adapters.sql.schema import dead_letter_actions, dead_letters, orders, products
from orders.domain.callers import Caller, Permission
from orders.domain.commands import MarkOrderFailed, ProcessOrder
from orders.domain.dead_letters import DeadLetter, DeadLetterFilter, DeadLetterState, RepairedOrder
from orders.domain.errors import ActionRefused, DeadLetterNotFound, Forbidden
from orders.domain.model import OrderLine, OrderMessage, OrderStatus
from orders.service_layer import process_order
from orders.service_layer.dead_letters import (
    KeepDeadLetter,
    discard_dead_letter,
    keep_dead_letter,
    list_dead_letters,
    replay_dead_letter,
    show_dead_letter,
)
from orders.validation import parse_order_message
from tests.fakes.orders import FakeClock, FakeMessagePublisher, FakeStatusPublisher, FakeSubmissionLimiter

OPERATOR = Caller(None, frozenset({Permission.OPERATE, Permission.READ_ANY_ORDER}), name="olivia@orders.local")
SECOND_OPERATOR = Caller(None, frozenset({Permission.OPERATE}), name="oscar@orders.local")
CUSTOMER = Caller("c-1", frozenset({Permission.OWN_ORDERS}), name="alice")


class Settings:
    sql_entra_auth = False

    def __init__(self, url: str) -> None:
        self.sql_url = url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'orders.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_engine_for(Settings(url))
    migrate(engine=engine)
    seed_catalog(engine)
    yield engine
    engine.dispose()


class Pipeline:
    """The handlers wired to a real database, as the composition root wires them."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.uow_factory = SqlUnitOfWork.factory(engine)
        self.events = FakeStatusPublisher()
        self.sent = FakeMessagePublisher()
        self.limiter = FakeSubmissionLimiter()
        self.clock = FakeClock()

    def keep(self, dead_letter: DeadLetter, failed: MarkOrderFailed | None):
        return keep_dead_letter(KeepDeadLetter(dead_letter, failed), uow_factory=self.uow_factory,
                                publisher=self.events, limiter=self.limiter, clock=self.clock)

    def replay(self, dead_letter_id: int, caller: Caller = OPERATOR, why: str = "SQL is back",
               repaired: RepairedOrder | None = None):
        return asyncio.run(replay_dead_letter(
            caller, dead_letter_id, why, repaired=repaired, uow_factory=self.uow_factory, publisher=self.sent,
            status_publisher=self.events, clock=self.clock, read_order=parse_order_message,
            write_order=order_message_body))

    def process_sent(self) -> list:
        """Process what the replays sent, as the processing trigger would (the attempt from the message)."""
        outcomes = []
        for message in self.sent.messages:
            command = ProcessOrder(message.correlation_id, message.customer_id, message.currency, message.items,
                                   message.accepted_at, attempt=message.attempt)
            outcomes.append(process_order(command, uow_factory=self.uow_factory, publisher=self.events,
                                          limiter=self.limiter, clock=self.clock))
        return outcomes

    def show(self, dead_letter_id: int):
        return show_dead_letter(OPERATOR, dead_letter_id, uow_factory=self.uow_factory, read_order=parse_order_message)

    def scalar(self, statement):
        with self.engine.connect() as connection:
            return connection.scalar(statement)


@pytest.fixture
def pipeline(engine) -> Pipeline:
    return Pipeline(engine)


def cid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def order_body(correlation_id: str, sku: str = "SKU-1", quantity: int = 1, customer: str = "c-1") -> bytes:
    return order_message_body(OrderMessage(correlation_id, customer, "EUR", (OrderLine(sku, quantity),),
                                           datetime(2026, 1, 2, tzinfo=UTC)))


def dead_letter(correlation_id: str | None, body: bytes, *, sequence_number: int = 7, attempt: int = 1,
                reason: str = "MaxDeliveryCountExceeded") -> DeadLetter:
    return DeadLetter(
        message_id=correlation_id or "not-an-order", sequence_number=sequence_number, body=body, reason=reason,
        description="Message could not be consumed after 10 delivery attempts.", delivery_count=10,
        enqueued_at=datetime(2026, 1, 2, 0, 0, 1, tzinfo=UTC), dead_lettered_at=datetime(2026, 1, 2, 0, 5, tzinfo=UTC),
        correlation_id=correlation_id, customer_id="c-1", attempt=attempt,
        message_properties={"messageId": correlation_id, "deliveryCount": 10, "sessionId": "c-1"},
        application_properties={"schemaVersion": 1, "DeadLetterReason": reason})


def failed(correlation_id: str, attempt: int = 1, reason: str = "processing failed repeatedly") -> MarkOrderFailed:
    return MarkOrderFailed(correlation_id, reason, customer_id="c-1", currency="EUR", attempt=attempt)


def kept_id(pipeline: Pipeline, correlation_id: str | None = None) -> int:
    found = list_dead_letters(OPERATOR, DeadLetterFilter(correlation_id=correlation_id), uow_factory=pipeline.uow_factory)
    return found[-1].id


def stock(pipeline: Pipeline, sku: str) -> int:
    return pipeline.scalar(select(products.c.stock).where(products.c.sku == sku))


def test_a_dead_letter_is_kept_with_every_field_and_once_under_redelivery(pipeline: Pipeline) -> None:
    original = dead_letter(cid(1), order_body(cid(1)))
    first = pipeline.keep(original, failed(cid(1)))
    again = pipeline.keep(original, failed(cid(1)))

    assert first.status is again.status is OrderStatus.FAILED
    assert pipeline.scalar(select(func.count()).select_from(dead_letters)) == 1
    detail = pipeline.show(kept_id(pipeline))
    kept = detail.dead_letter
    assert (kept.body, kept.reason, kept.description, kept.delivery_count, kept.sequence_number) == (
        original.body, "MaxDeliveryCountExceeded", original.description, 10, 7)
    assert (kept.enqueued_at, kept.dead_lettered_at, kept.correlation_id, kept.customer_id, kept.state) == (
        original.enqueued_at, original.dead_lettered_at, cid(1), "c-1", DeadLetterState.KEPT)
    assert kept.message_properties == {"messageId": cid(1), "deliveryCount": 10, "sessionId": "c-1"}
    assert kept.application_properties == {"schemaVersion": 1, "DeadLetterReason": "MaxDeliveryCountExceeded"}
    assert detail.order.status is OrderStatus.FAILED and detail.actions == []


def test_replaying_a_failed_order_gives_it_a_new_attempt_that_completes_and_moves_stock_once(pipeline: Pipeline) -> None:
    pipeline.keep(dead_letter(cid(2), order_body(cid(2), "SKU-2", 3)), failed(cid(2)))
    before = stock(pipeline, "SKU-2")

    replayed = pipeline.replay(kept_id(pipeline), why="SQL outage is over")

    assert (replayed.correlation_id, replayed.attempt, replayed.started, replayed.sent) == (cid(2), 2, True, True)
    [message] = pipeline.sent.messages
    assert (message.attempt, message.deduplication_key, message.ordering_key) == (2, f"{cid(2)}:2", "c-1")
    reopened = pipeline.show(kept_id(pipeline)).order
    assert (reopened.status, reopened.attempt, reopened.reason) == (OrderStatus.ACCEPTED, 2, None)
    assert [(e.status, e.outcome.attempt) for e in pipeline.events.events][-1] == (OrderStatus.ACCEPTED, 2)

    [outcome] = pipeline.process_sent()
    [again] = pipeline.process_sent()  # the same attempt delivered twice

    assert (outcome.status, outcome.attempt) == (OrderStatus.COMPLETED, 2) and outcome.order_id is not None
    assert again == outcome
    assert stock(pipeline, "SKU-2") == before - 3
    detail = pipeline.show(kept_id(pipeline))
    assert detail.dead_letter.state is DeadLetterState.REPLAYED and detail.dead_letter.replay_attempt == 2
    assert [(a.kind.value, a.actor, a.why, a.attempt) for a in detail.actions] == [
        ("replay", "olivia@orders.local", "SQL outage is over", 2)]


def test_replaying_twice_or_from_two_operators_at_once_makes_one_attempt(pipeline: Pipeline) -> None:
    pipeline.keep(dead_letter(cid(3), order_body(cid(3))), failed(cid(3)))
    dead_letter_id = kept_id(pipeline)
    results, barrier = [], threading.Barrier(2)

    def replay(caller: Caller) -> None:
        barrier.wait()
        results.append(pipeline.replay(dead_letter_id, caller))

    threads = [threading.Thread(target=replay, args=(who,)) for who in (OPERATOR, SECOND_OPERATOR)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    later = pipeline.replay(dead_letter_id)  # after both

    assert sorted(result.started for result in results) == [False, True]
    assert {result.attempt for result in [*results, later]} == {2}
    assert pipeline.scalar(select(func.count()).select_from(dead_letter_actions)) == 1
    # Sent again only while the attempt waits (the queue's duplicate detection keeps one copy): one message id.
    assert {message.deduplication_key for message in pipeline.sent.messages} == {f"{cid(3)}:2"}
    pipeline.process_sent()
    assert pipeline.replay(dead_letter_id).sent is False  # the attempt has its outcome: nothing is sent
    assert pipeline.scalar(select(orders.c.attempt).where(orders.c.correlation_id == cid(3))) == 2


def test_a_completed_or_rejected_order_is_never_replayed(pipeline: Pipeline) -> None:
    process_order(ProcessOrder(cid(4), "c-1", "EUR", (OrderLine("SKU-1", 1),), datetime(2026, 1, 2, tzinfo=UTC)),
                  uow_factory=pipeline.uow_factory, publisher=pipeline.events, limiter=pipeline.limiter,
                  clock=pipeline.clock)
    pipeline.keep(dead_letter(cid(4), order_body(cid(4))), failed(cid(4)))  # a late duplicate was dead-lettered

    with pytest.raises(ActionRefused, match="is Completed: only a Failed order is replayed; discard"):
        pipeline.replay(kept_id(pipeline))
    assert pipeline.sent.messages == []


def test_an_unreadable_body_is_refused_for_replay_and_a_repair_is_validated_and_processed(pipeline: Pipeline) -> None:
    poison = b'{"schemaVersion": 1, "correlationId": "' + cid(5).encode() + b'", "items": "lots"}'
    pipeline.keep(dead_letter(cid(5), poison, reason="PoisonMessage"),
                  MarkOrderFailed(cid(5), "message body does not match schema version 1"))
    dead_letter_id = kept_id(pipeline)

    with pytest.raises(ActionRefused, match="cannot be read as an order .*repair it with a corrected body, or discard"):
        pipeline.replay(dead_letter_id)
    repaired = pipeline.replay(dead_letter_id, why="items fixed with the customer",
                               repaired=RepairedOrder("c-1", "EUR", (OrderLine("SKU-1", 2),)))
    [outcome] = pipeline.process_sent()

    assert (repaired.attempt, outcome.status, outcome.attempt) == (2, OrderStatus.COMPLETED, 2)
    detail = pipeline.show(dead_letter_id)
    assert json.loads(detail.dead_letter.replayed_body)["items"] == [{"sku": "SKU-1", "quantity": 2}]
    assert [action.kind.value for action in detail.actions] == ["repair"]


def test_a_dead_letter_naming_no_order_is_repaired_into_a_new_order(pipeline: Pipeline) -> None:
    pipeline.keep(dead_letter(None, b"\xff\xfe not json"), None)
    replayed = pipeline.replay(kept_id(pipeline), repaired=RepairedOrder("c-9", "EUR", (OrderLine("SKU-1", 1),)))
    [outcome] = pipeline.process_sent()
    assert outcome.correlation_id == replayed.correlation_id and outcome.status is OrderStatus.COMPLETED
    assert outcome.customer_id == "c-9"


def test_a_repair_cannot_move_an_order_to_another_customer(pipeline: Pipeline) -> None:
    pipeline.keep(dead_letter(cid(6), order_body(cid(6))), failed(cid(6)))
    with pytest.raises(ActionRefused, match="belongs to customer c-1"):
        pipeline.replay(kept_id(pipeline), repaired=RepairedOrder("c-2", "EUR", (OrderLine("SKU-1", 1),)))


def test_a_discard_is_recorded_and_the_dead_letter_is_never_replayed_after_it(pipeline: Pipeline) -> None:
    pipeline.keep(dead_letter(cid(7), order_body(cid(7))), failed(cid(7)))
    dead_letter_id = kept_id(pipeline)

    discarded = discard_dead_letter(OPERATOR, dead_letter_id, "customer cancelled", uow_factory=pipeline.uow_factory,
                                    clock=pipeline.clock)
    discard_dead_letter(OPERATOR, dead_letter_id, "clicked twice", uow_factory=pipeline.uow_factory,
                        clock=pipeline.clock)

    assert discarded.state is DeadLetterState.DISCARDED
    actions = pipeline.show(dead_letter_id).actions
    assert [(a.kind.value, a.actor, a.why, a.at) for a in actions] == [
        ("discard", "olivia@orders.local", "customer cancelled", pipeline.clock.now())]
    with pytest.raises(ActionRefused, match="was discarded; it is never replayed"):
        pipeline.replay(dead_letter_id)
    assert pipeline.show(dead_letter_id).order.status is OrderStatus.FAILED


def test_a_replayed_attempt_that_fails_again_is_kept_again_and_can_be_replayed_once_more(pipeline: Pipeline) -> None:
    pipeline.keep(dead_letter(cid(8), order_body(cid(8))), failed(cid(8)))
    pipeline.replay(kept_id(pipeline))
    # Attempt 2 is dead-lettered as well: another message id (the attempt's), another dead letter.
    second = dead_letter(cid(8), order_body(cid(8)), sequence_number=99, attempt=2)
    second = DeadLetter(**{**{f: getattr(second, f) for f in second.__slots__}, "message_id": f"{cid(8)}:2"})
    outcome = pipeline.keep(second, failed(cid(8), attempt=2, reason="still failing"))
    assert (outcome.status, outcome.attempt, outcome.reason) == (OrderStatus.FAILED, 2, "still failing")

    third = pipeline.replay(kept_id(pipeline, cid(8)))
    assert third.attempt == 3
    assert pipeline.sent.messages[-1].deduplication_key == f"{cid(8)}:3"


def test_the_old_attempts_dead_letter_does_not_fail_a_replayed_order(pipeline: Pipeline) -> None:
    """The first attempt's dead letter delivered again while attempt 2 runs leaves attempt 2 alone."""
    first = dead_letter(cid(10), order_body(cid(10)))
    pipeline.keep(first, failed(cid(10)))
    pipeline.replay(kept_id(pipeline))
    outcome = pipeline.keep(first, failed(cid(10)))
    assert (outcome.status, outcome.attempt) == (OrderStatus.ACCEPTED, 2)


def test_only_operators_may_touch_dead_letters_and_unknown_ids_say_so(pipeline: Pipeline) -> None:
    with pytest.raises(Forbidden, match="Orders.Admin"):
        list_dead_letters(CUSTOMER, DeadLetterFilter(), uow_factory=pipeline.uow_factory)
    with pytest.raises(Forbidden):
        pipeline.replay(1, caller=CUSTOMER)
    with pytest.raises(DeadLetterNotFound, match="no dead letter is kept with id 404"):
        pipeline.replay(404)


def test_the_list_filters_by_reason_time_customer_and_pages(pipeline: Pipeline) -> None:
    for n in range(5):
        pipeline.keep(dead_letter(cid(20 + n), order_body(cid(20 + n)), reason="PoisonMessage" if n == 4
                                  else "MaxDeliveryCountExceeded"), failed(cid(20 + n)))

    def ids(**criteria) -> list[str]:
        return [d.correlation_id for d in list_dead_letters(OPERATOR, DeadLetterFilter(**criteria),
                                                            uow_factory=pipeline.uow_factory)]

    assert len(ids(reason="MaxDeliveryCountExceeded")) == 4
    assert ids(reason="PoisonMessage") == [cid(24)]
    assert ids(since=datetime(2026, 1, 3, tzinfo=UTC)) == []
    assert len(ids(until=datetime(2026, 1, 3, tzinfo=UTC), customer_id="c-1")) == 5
    first_page = list_dead_letters(OPERATOR, DeadLetterFilter(limit=2), uow_factory=pipeline.uow_factory)
    assert ids(limit=2) == [cid(20), cid(21)]
    assert ids(after_id=first_page[-1].id, limit=2) == [cid(22), cid(23)]
