"""In-memory stand-ins for the order pipeline's ports (``orders.domain.ports``), for service-layer tests."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from orders.domain.errors import AcceptanceUnknown, DuplicateOrder, TooManyOrders, TransientError
from orders.domain.events import OrderStatusChanged
from orders.domain.model import AcceptedRecord, OrderMessage, OrderOutcome, OrderRecord, OrderStatus, Product


@dataclass
class FakeDatabase:
    """What a database holds: the catalog's stock and the stored orders. Shared by the units of work."""

    products: dict[str, Product] = field(default_factory=dict)
    orders: dict[str, tuple[int, OrderRecord]] = field(default_factory=dict)
    next_order_id: int = 1
    commits: int = 0
    down: bool = False
    #: Runs once, just before the next ``add``: lets a test commit a competing transaction at that moment.
    before_next_add: Callable[[], None] | None = None

    def stock(self, sku: str) -> int:
        return self.products[sku].stock


class FakeOrderStore:
    """Works on a private copy of the database's state, like a transaction; the unit of work publishes it."""

    def __init__(self, products: dict[str, Product], orders: dict[str, tuple[int, OrderRecord]],
                 database: FakeDatabase) -> None:
        self.products_state = products
        self.orders_state = orders
        self._database = database

    def get(self, correlation_id: str) -> OrderOutcome | None:
        stored = self.orders_state.get(correlation_id)
        return None if stored is None else stored[1].outcome(stored[0])

    def products(self, skus: Iterable[str]) -> dict[str, Product]:
        return {sku: self.products_state[sku] for sku in skus if sku in self.products_state}

    def list_products(self) -> list[Product]:
        return [self.products_state[sku] for sku in sorted(self.products_state)]

    def reserve_stock(self, sku: str, quantity: int) -> Product | None:
        product = self.products_state.get(sku)
        if product is None or product.stock < quantity:
            return None
        self.products_state[sku] = Product(product.sku, product.name, product.unit_price, product.currency,
                                           product.stock - quantity)
        return self.products_state[sku]

    def add(self, record: OrderRecord) -> int:
        hook, self._database.before_next_add = self._database.before_next_add, None
        if hook is not None:
            hook()
        if record.correlation_id in self.orders_state or record.correlation_id in self._database.orders:
            raise DuplicateOrder(record.correlation_id)
        order_id = self._database.next_order_id
        self._database.next_order_id += 1
        self.orders_state[record.correlation_id] = (order_id, record)
        return order_id


class FakeUnitOfWork:
    def __init__(self, database: FakeDatabase, *, read_only: bool = False) -> None:
        self._database = database
        self.read_only = read_only
        self.orders: FakeOrderStore

    def _begin(self) -> None:
        if self._database.down:
            raise TransientError("the fake database is down")
        self.orders = FakeOrderStore(dict(self._database.products), dict(self._database.orders), self._database)

    def __enter__(self) -> Self:
        self._begin()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def commit(self) -> None:
        if self.read_only:
            raise AssertionError("a read-only unit of work committed")
        self._database.products = dict(self.orders.products_state)
        self._database.orders = dict(self.orders.orders_state)
        self._database.commits += 1
        self._begin()

    def rollback(self) -> None:
        self._begin()


class FakeUnitOfWorkFactory:
    def __init__(self, database: FakeDatabase) -> None:
        self.database = database

    def __call__(self, *, read_only: bool = False) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.database, read_only=read_only)


class FakeStatusPublisher:
    def __init__(self) -> None:
        self.events: list[OrderStatusChanged] = []
        self.fail_next = 0

    def publish(self, event: OrderStatusChanged) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError("the fake broker is unavailable")
        self.events.append(copy.copy(event))


class FakeMessagePublisher:
    def __init__(self) -> None:
        self.messages: list[OrderMessage] = []
        self.down = False
        self.silent = False

    async def publish(self, message: OrderMessage) -> None:
        if self.down:
            raise TransientError("the fake broker is unavailable")
        self.messages.append(message)
        if self.silent:  # it landed, but the acknowledgement is lost
            raise AcceptanceUnknown("the fake broker did not acknowledge in time")


class FakeAcceptedRecordStore:
    def __init__(self) -> None:
        self.records: dict[str, tuple[AcceptedRecord, int]] = {}
        self.idempotency_keys: dict[str, str] = {}
        self.down = False

    async def record_accepted(self, record: AcceptedRecord, ttl_seconds: int) -> None:
        if self.down:
            raise ConnectionError("the fake registry is unreachable")
        self.records[record.correlation_id] = (record, ttl_seconds)

    async def claim_idempotency_key(self, correlation_id: str, fingerprint: str, ttl_seconds: int) -> str | None:
        if self.down:
            raise ConnectionError("the fake registry is unreachable")
        bound = self.idempotency_keys.setdefault(correlation_id, fingerprint)
        return None if bound == fingerprint else bound

    async def get_accepted(self, correlation_id: str) -> AcceptedRecord | None:
        if self.down:
            raise TransientError("the fake registry is unreachable")
        stored = self.records.get(correlation_id)
        return None if stored is None else stored[0]


class FakeClock:
    def __init__(self, start: datetime = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def statuses(events: Iterable[OrderStatusChanged]) -> list[OrderStatus]:
    return [event.status for event in events]


class FakeSubmissionLimiter:
    """Counts orders in flight per customer and refuses above ``max_in_flight``; ``down`` makes it raise."""

    def __init__(self, max_in_flight: int = 1000) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight: dict[str, set[str]] = {}
        self.down = False

    async def admit(self, customer_id: str, correlation_id: str) -> TooManyOrders | None:
        if self.down:
            raise ConnectionError("the fake limiter is unreachable")
        mine = self.in_flight.setdefault(customer_id, set())
        if correlation_id not in mine and len(mine) >= self.max_in_flight:
            return TooManyOrders(f"{len(mine)} orders in flight", retry_after_seconds=5)
        mine.add(correlation_id)
        return None

    def release(self, customer_id: str, correlation_id: str) -> None:
        if self.down:
            raise ConnectionError("the fake limiter is unreachable")
        self.in_flight.get(customer_id, set()).discard(correlation_id)
