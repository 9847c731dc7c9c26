"""The SQL order store on real databases: SQLite (a file in tmp_path) and PostgreSQL (a private server),
the same tests on both."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text, update

from orders.json_contracts import status_json
from orders.adapters.sql import SqlUnitOfWork, create_engine_for, migrate, seed_catalog
from orders.adapters.sql.schema import metadata, order_lines, orders, products
from orders.adapters.sql.seed import load_catalog
from orders.domain import (
    DuplicateOrder,
    MarkOrderFailed,
    OrderLine,
    OrderRecord,
    OrderStatus,
    ProcessOrder,
    TransientError,
)
from orders.service_layer import get_order_status, list_products, mark_order_failed, process_order
from local_servers.ports import free_port
from orders.domain.callers import Caller, Permission
from tests.fakes.orders import FakeAcceptedRecordStore, FakeClock, FakeStatusPublisher, FakeSubmissionLimiter, statuses

REPO = Path(__file__).resolve().parents[4]


class Settings:
    sql_entra_auth = False

    def __init__(self, url: str) -> None:
        self.sql_url = url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sql_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orders.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(sql_url):
    engine = create_engine_for(Settings(sql_url))
    migrate(engine=engine)
    seed_catalog(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def uow_factory(engine):
    return SqlUnitOfWork.factory(engine)


@pytest.fixture
def events():
    return FakeStatusPublisher()


@pytest.fixture
def clock():
    return FakeClock()


def order(cid: str, *lines: tuple[str, int], currency: str = "EUR") -> ProcessOrder:
    return ProcessOrder(cid, "c-1", currency, tuple(OrderLine(sku, qty) for sku, qty in lines),
                        datetime(2026, 1, 2, tzinfo=UTC))


def cid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def stock(engine, sku: str) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(products.c.stock).where(products.c.sku == sku))


def count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(table))


def set_stock(engine, sku: str, units: int) -> None:
    with engine.begin() as connection:
        connection.execute(update(products).where(products.c.sku == sku).values(stock=units))


def test_migrations_build_exactly_the_schema_the_code_uses(engine):
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    migrate(engine=engine)  # again: nothing to do, nothing breaks


def test_seed_loads_the_demo_catalog_once_and_never_resets_stock(engine):
    catalog = load_catalog()
    assert len(catalog) >= 10
    assert {p.currency for p in catalog} == {"EUR"}
    assert [p.sku for p in catalog if p.stock == 0]
    set_stock(engine, "SKU-1", 3)
    assert seed_catalog(engine) == 0
    assert stock(engine, "SKU-1") == 3
    assert count(engine, products) == len(catalog)


def test_products_come_back_with_exact_prices(uow_factory):
    listed = list_products(uow_factory=uow_factory)
    assert [p.sku for p in listed] == sorted(p.sku for p in load_catalog())
    first = next(p for p in listed if p.sku == "SKU-1")
    assert (first.unit_price, first.currency) == (Decimal("18.90"), "EUR")
    assert isinstance(first.unit_price, Decimal)


def test_a_completed_order_stores_order_lines_and_stock_in_one_go(engine, uow_factory, events, clock):
    before = (stock(engine, "SKU-1"), stock(engine, "SKU-3"))
    outcome = process_order(order(cid(1), ("SKU-1", 2), ("SKU-3", 3), ("SKU-1", 1)), uow_factory=uow_factory,
                            publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    assert outcome.status is OrderStatus.COMPLETED
    assert outcome.total == Decimal("71.67")  # 3 × 18.90 + 3 × 4.99
    assert isinstance(outcome.order_id, int) and outcome.order_id >= 1
    assert (stock(engine, "SKU-1"), stock(engine, "SKU-3")) == (before[0] - 3, before[1] - 3)
    with engine.connect() as connection:
        row = connection.execute(select(orders).where(orders.c.correlation_id == cid(1))).one()
        lines = connection.execute(select(order_lines.c.sku, order_lines.c.quantity, order_lines.c.unit_price)
                                   .where(order_lines.c.order_id == row.order_id)
                                   .order_by(order_lines.c.line_no)).all()
    assert (row.order_id, row.status, row.total, row.customer_id) == (outcome.order_id, "Completed",
                                                                     Decimal("71.67"), "c-1")
    assert row.created_at.tzinfo is UTC and row.created_at == clock.now()
    assert [tuple(line) for line in lines] == [("SKU-1", 2, Decimal("18.90")), ("SKU-3", 3, Decimal("4.99")),
                                               ("SKU-1", 1, Decimal("18.90"))]


def test_the_database_generates_distinct_order_ids(uow_factory, events, clock):
    ids = [process_order(order(cid(n), ("SKU-3", 1)), uow_factory=uow_factory, publisher=events,
                         limiter=FakeSubmissionLimiter(), clock=clock).order_id for n in range(1, 4)]
    assert len(set(ids)) == 3 and ids == sorted(ids)


def test_a_redelivered_message_gives_the_same_order_and_no_second_stock_change(engine, uow_factory, events,
                                                                               clock):
    first = process_order(order(cid(1), ("SKU-2", 2)), uow_factory=uow_factory, publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    left = stock(engine, "SKU-2")
    clock.advance(30)
    again = process_order(order(cid(1), ("SKU-2", 2)), uow_factory=uow_factory, publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    assert again == first
    assert stock(engine, "SKU-2") == left
    assert count(engine, orders) == 1
    assert events.events[0] == events.events[1]


def test_a_redelivered_message_stays_completed_after_its_product_sold_out(engine, uow_factory, events, clock):
    set_stock(engine, "SKU-4", 2)
    first = process_order(order(cid(1), ("SKU-4", 2)), uow_factory=uow_factory, publisher=events,
                          limiter=FakeSubmissionLimiter(), clock=clock)
    again = process_order(order(cid(1), ("SKU-4", 2)), uow_factory=uow_factory, publisher=events,
                          limiter=FakeSubmissionLimiter(), clock=clock)
    assert first.status is OrderStatus.COMPLETED and again == first
    assert stock(engine, "SKU-4") == 0
    assert count(engine, orders) == 1


def test_a_reservation_hands_back_the_product_with_what_is_left_or_nothing_when_short(engine, uow_factory):
    set_stock(engine, "SKU-4", 3)
    with uow_factory() as uow:
        taken = uow.orders.reserve_stock("SKU-4", 2)
        short = uow.orders.reserve_stock("SKU-4", 2)
        unknown = uow.orders.reserve_stock("SKU-404", 1)
        uow.commit()
    assert (taken.sku, taken.stock, taken.currency) == ("SKU-4", 1, "EUR")
    assert isinstance(taken.unit_price, Decimal)
    assert short is None and unknown is None
    assert stock(engine, "SKU-4") == 1


def test_rejections_name_the_sku_change_nothing_and_are_remembered(engine, uow_factory, events, clock):
    before = stock(engine, "SKU-1")
    unknown = process_order(order(cid(1), ("SKU-1", 1), ("SKU-404", 1)), uow_factory=uow_factory,
                            publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    empty = process_order(order(cid(2), ("SKU-1", 1), ("SKU-12", 1)), uow_factory=uow_factory,
                          publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    assert (unknown.status, unknown.reason) == (OrderStatus.REJECTED, "unknown SKU: SKU-404")
    assert (empty.status, empty.reason) == (OrderStatus.REJECTED, "not enough stock for SKU SKU-12: 1 requested")
    assert stock(engine, "SKU-1") == before  # SKU-1 was taken, then given back with the rollback
    assert count(engine, order_lines) == 0
    again = process_order(order(cid(2), ("SKU-1", 1), ("SKU-12", 1)), uow_factory=uow_factory,
                          publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    assert again == empty


def test_the_last_units_sell_and_then_the_product_is_out(engine, uow_factory, events, clock):
    set_stock(engine, "SKU-4", 2)
    outcomes = [process_order(order(cid(n), ("SKU-4", 1)), uow_factory=uow_factory, publisher=events,
                              limiter=FakeSubmissionLimiter(), clock=clock).status for n in range(1, 4)]
    assert outcomes == [OrderStatus.COMPLETED, OrderStatus.COMPLETED, OrderStatus.REJECTED]
    assert stock(engine, "SKU-4") == 0


def test_a_second_insert_of_the_same_correlation_id_is_reported_as_a_duplicate(uow_factory, clock):
    record = OrderRecord(cid(1), "c-1", OrderStatus.REJECTED, "EUR", None, "x", clock.now())
    with uow_factory() as uow:
        uow.orders.add(record)
        uow.commit()
    with uow_factory() as uow, pytest.raises(DuplicateOrder):
        uow.orders.add(record)


def test_leaving_a_unit_of_work_without_commit_leaves_no_trace(engine, uow_factory, clock):
    before = stock(engine, "SKU-1")
    with uow_factory() as uow:
        assert uow.orders.reserve_stock("SKU-1", 1)
        uow.orders.add(OrderRecord(cid(1), "c-1", OrderStatus.COMPLETED, "EUR", Decimal("18.90"), None,
                                   clock.now()))
    assert stock(engine, "SKU-1") == before
    assert count(engine, orders) == 0


def test_dead_lettered_orders_are_failed_in_sql_but_completed_ones_stay_completed(engine, uow_factory, events,
                                                                                  clock):
    failed = mark_order_failed(MarkOrderFailed(cid(1), "message body is not valid JSON"), uow_factory=uow_factory,
                               publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    assert (failed.status, failed.reason) == (OrderStatus.FAILED, "message body is not valid JSON")
    with engine.connect() as connection:
        row = connection.execute(select(orders).where(orders.c.correlation_id == cid(1))).one()
    assert (row.status, row.customer_id, row.reason) == ("Failed", None, "message body is not valid JSON")

    completed = process_order(order(cid(2), ("SKU-3", 1)), uow_factory=uow_factory, publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    assert mark_order_failed(MarkOrderFailed(cid(2), "MaxDeliveryCountExceeded"), uow_factory=uow_factory,
                             publisher=events, limiter=FakeSubmissionLimiter(), clock=clock) == completed
    assert statuses(events.events) == [OrderStatus.FAILED, OrderStatus.COMPLETED, OrderStatus.COMPLETED]


async def test_status_is_read_from_sql(uow_factory, events, clock):
    outcome = process_order(order(cid(1), ("SKU-1", 1)), uow_factory=uow_factory, publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    status = await get_order_status(cid(1), Caller(None, frozenset({Permission.READ_ANY_ORDER})), uow_factory=uow_factory, accepted_records=FakeAcceptedRecordStore())
    assert status == outcome
    assert status_json(status)["total"] == "18.90"


def test_an_unreachable_database_is_a_transient_error(events, clock):
    engine = create_engine_for(Settings(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"))
    try:
        with pytest.raises(TransientError, match="retry later"):
            process_order(order(cid(1), ("SKU-1", 1)), uow_factory=SqlUnitOfWork.factory(engine),
                          publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    finally:
        engine.dispose()
    assert events.events == []


def test_a_locked_sqlite_database_is_a_transient_error(tmp_path, events, clock):
    """Another writer holding the lock longer than the busy timeout: the message must be retried."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    engine = create_engine_for(Settings(url), sqlite_busy_timeout_seconds=0.2)
    try:
        migrate(engine=engine)
        seed_catalog(engine)
        with engine.connect() as holder:
            holder.execute(text("UPDATE products SET stock = stock WHERE sku = 'SKU-1'"))
            with pytest.raises(TransientError):
                process_order(order(cid(1), ("SKU-1", 1)), uow_factory=SqlUnitOfWork.factory(engine),
                              publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
    finally:
        engine.dispose()


RACER = textwrap.dedent("""
    import json, sys
    from datetime import UTC, datetime
    from orders.adapters.clock import SystemClock
    from orders.adapters.sql import SqlUnitOfWork, create_engine_for
    from orders.domain import OrderLine, ProcessOrder
    from orders.service_layer import process_order

    class Settings:
        sql_entra_auth = False
        sql_url = sys.argv[1]

    class FakeStatusPublisher:
        def publish(self, event):
            pass

    class FakeSubmissionLimiter:
        def release(self, customer_id, correlation_id):
            pass

    correlation_ids = json.loads(sys.argv[2])
    engine = create_engine_for(Settings())
    with engine.connect():
        pass  # connect before the start line, so the race is about orders, not start-up
    print("ready", flush=True)
    sys.stdin.readline()
    results = []
    for cid in correlation_ids:
        command = ProcessOrder(cid, "c-1", "EUR", (OrderLine("SKU-5", 1), OrderLine("SKU-3", 1)),
                               datetime.now(UTC))
        outcome = process_order(command, uow_factory=SqlUnitOfWork.factory(engine),
                                publisher=FakeStatusPublisher(), limiter=FakeSubmissionLimiter(),
                                clock=SystemClock())
        results.append([outcome.status.value, outcome.order_id])
    engine.dispose()
    print(json.dumps(results), flush=True)
""")


def race(sql_url: str, work: list[list[str]]) -> list[list[list]]:
    """Run one process per list of correlationIds, all starting at once; each returns [status, orderId] pairs."""
    procs = [subprocess.Popen([sys.executable, "-c", RACER, sql_url, json.dumps(ids)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for ids in work]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0] * len(procs)
    return results


def test_processes_racing_for_the_last_units_sell_exactly_that_many(engine, sql_url):
    """Four OS processes, six orders each, race for the last five units of SKU-5."""
    last_units, racers, attempts = 5, 4, 6
    set_stock(engine, "SKU-5", last_units)
    other_before = stock(engine, "SKU-3")
    results = race(sql_url, [[cid(100 * w + n) for n in range(attempts)] for w in range(racers)])
    flat = [status for worker in results for status, _ in worker]
    assert flat.count("Completed") == last_units
    assert flat.count("Rejected") == racers * attempts - last_units
    assert stock(engine, "SKU-5") == 0
    assert stock(engine, "SKU-3") == other_before - last_units  # the other line only for the winners
    with engine.connect() as connection:
        sold = connection.scalar(select(func.sum(order_lines.c.quantity)).where(order_lines.c.sku == "SKU-5"))
    assert sold == last_units
    assert count(engine, orders) == racers * attempts


def test_processes_delivered_the_same_orders_at_once_make_each_order_once(engine, sql_url):
    """Three OS processes each get the same eight messages at the same moment (a duplicated delivery): every
    process reports the same OrderId per order, and stock moves once per order."""
    set_stock(engine, "SKU-5", 100)
    other_before = stock(engine, "SKU-3")
    same = [cid(n) for n in range(8)]
    results = race(sql_url, [same, same, same])
    assert results[0] == results[1] == results[2]
    assert {status for status, _ in results[0]} == {"Completed"}
    assert len({order_id for _, order_id in results[0]}) == 8
    assert stock(engine, "SKU-5") == 100 - 8
    assert stock(engine, "SKU-3") == other_before - 8
    assert count(engine, orders) == 8
    assert count(engine, order_lines) == 16


def test_sqlite_reads_do_not_queue_behind_a_writer(tmp_path, events, clock):
    """Status and catalog reads take no write lock, so they answer while a transaction is writing."""
    engine = create_engine_for(Settings(f"sqlite:///{tmp_path / 'busy.db'}"), sqlite_busy_timeout_seconds=0.2)
    try:
        migrate(engine=engine)
        seed_catalog(engine)
        uow_factory = SqlUnitOfWork.factory(engine)
        process_order(order(cid(1), ("SKU-1", 1)), uow_factory=uow_factory, publisher=events, limiter=FakeSubmissionLimiter(), clock=clock)
        with engine.connect() as writer:
            writer.execute(text("UPDATE products SET stock = stock - 1 WHERE sku = 'SKU-2'"))
            assert len(list_products(uow_factory=uow_factory)) == len(load_catalog())
            with uow_factory(read_only=True) as uow:
                assert uow.orders.get(cid(1)).status is OrderStatus.COMPLETED
    finally:
        engine.dispose()


def test_migrate_takes_a_plain_url_and_is_idempotent(sql_url):
    migrate(sql_url)
    migrate(sql_url)
    engine = create_engine_for(Settings(sql_url))
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0002"
            assert connection.scalar(select(func.count()).select_from(orders)) == 0
    finally:
        engine.dispose()


def test_the_command_line_migrates_and_seeds_a_fresh_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'orders.db'}"
    runs = [subprocess.run([sys.executable, "-m", "orders.adapters.sql", "seed", "--url", url], cwd=REPO,
                           capture_output=True, text=True, check=True, timeout=60) for _ in range(2)]
    reports = [json.loads(run.stdout) for run in runs]
    assert [report["productsAdded"] for report in reports] == [len(load_catalog()), 0]
    assert reports[0]["event"] == "order store migrated and seeded"
