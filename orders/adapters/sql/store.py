"""``SqlOrderStore`` and ``SqlUnitOfWork``: the ``OrderStore``/``UnitOfWork`` ports on SQLAlchemy Core.

Core rather than the ORM: the domain objects are frozen dataclasses that need no identity map or change
tracking, and the statements that matter (the conditional stock update whose row count is the reservation,
the insert that returns the database's identity) are written out here exactly as they run on all three
engines, so tests can pin down the SQL each dialect gets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from orders.adapters.sql.dead_letter_store import SqlDeadLetterStore
from orders.adapters.sql.engine import READ_ONLY_OPTION, SQLITE_BUSY_TIMEOUT_SECONDS, process_write_lock
from orders.adapters.sql.schema import CORRELATION_UNIQUE, order_lines, orders, products
from orders.domain.errors import DuplicateOrder, TransientError
from orders.domain.model import OrderOutcome, OrderRecord, OrderStatus, Product
from orders.domain.ports import UnitOfWorkFactory

#: Take units only if that many are left: the row it hands back (or none) is the reservation, with no
#: read-then-write window in which another transaction could take the same units. The row also carries the
#: price, so an order that can be fulfilled needs no read of the catalog (``RETURNING`` on SQLite and
#: PostgreSQL, ``OUTPUT inserted.*`` on SQL Server).
RESERVE_STOCK = (
    update(products)
    .where(products.c.sku == bindparam("reserve_sku"), products.c.stock >= bindparam("reserve_quantity"))
    .values(stock=products.c.stock - bindparam("reserve_quantity"))
    .returning(*products.c)
)

#: The order row; the database generates ``order_id`` and hands it back in the same round trip
#: (``RETURNING`` on SQLite/PostgreSQL, ``OUTPUT inserted.order_id`` on SQL Server).
INSERT_ORDER = insert(orders).returning(orders.c.order_id)

INSERT_LINES = insert(order_lines)

#: The ordered products, built once: an ``IN`` over an expanding parameter.
SELECT_PRODUCTS = select(products).where(products.c.sku.in_(bindparam("skus", expanding=True)))

SELECT_ORDER = select(
    orders.c.order_id, orders.c.status, orders.c.total, orders.c.currency, orders.c.reason, orders.c.updated_at,
    orders.c.customer_id, orders.c.attempt,
).where(orders.c.correlation_id == bindparam("correlation_id"))

#: The outcome of a reopened order; the row count (1 or 0) says whether this delivery settled it.
SETTLE_ORDER = (
    update(orders)
    .where(orders.c.correlation_id == bindparam("settle_correlation_id"),
           orders.c.status == OrderStatus.ACCEPTED.value, orders.c.attempt == bindparam("settle_attempt"))
    .values(status=bindparam("status"), total=bindparam("total"), currency=bindparam("currency"),
            reason=bindparam("reason"), updated_at=bindparam("updated_at"))
    .returning(orders.c.order_id)
)

REOPEN_ORDER = (
    update(orders)
    .where(orders.c.correlation_id == bindparam("reopen_correlation_id"),
           orders.c.status == OrderStatus.FAILED.value, orders.c.attempt == bindparam("failed_attempt"))
    .values(status=OrderStatus.ACCEPTED.value, attempt=orders.c.attempt + 1, reason=None,
            updated_at=bindparam("updated_at"))
)

# SQL Server error numbers worth a retry: deadlock victim, lock timeout, and Azure SQL's "database busy,
# moving, or throttled" family.
_MSSQL_TRANSIENT = re.compile(r"\((1205|1222|4060|4221|10928|10929|40197|40501|40613|49918|49919|49920)\)")


class SqlOrderStore:
    """``OrderStore`` on one open connection; every call runs inside the caller's transaction."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def get(self, correlation_id: str) -> OrderOutcome | None:
        row = self._connection.execute(SELECT_ORDER, {"correlation_id": correlation_id}).one_or_none()
        if row is None:
            return None
        status = OrderStatus(row.status)
        return OrderOutcome(
            correlation_id=correlation_id,
            status=status,
            order_id=row.order_id if status is OrderStatus.COMPLETED else None,
            total=row.total,
            currency=row.currency,
            reason=row.reason,
            updated_at=row.updated_at,
            customer_id=row.customer_id,
            attempt=row.attempt,
        )

    def products(self, skus: Iterable[str]) -> dict[str, Product]:
        wanted = sorted(set(skus))
        if not wanted:
            return {}
        rows = self._connection.execute(SELECT_PRODUCTS, {"skus": wanted})
        return {row.sku: _product(row) for row in rows}

    def list_products(self) -> list[Product]:
        return [_product(row) for row in self._connection.execute(select(products).order_by(products.c.sku))]

    def reserve_stock(self, sku: str, quantity: int) -> Product | None:
        row = self._connection.execute(RESERVE_STOCK, {"reserve_sku": sku, "reserve_quantity": quantity}).one_or_none()
        return None if row is None else _product(row)

    def add(self, record: OrderRecord) -> int:
        try:
            order_id: int = self._connection.execute(INSERT_ORDER, {
                "correlation_id": record.correlation_id,
                "customer_id": record.customer_id,
                "status": record.status.value,
                "total": record.total,
                "currency": record.currency,
                "reason": record.reason,
                "created_at": record.at,
                "updated_at": record.at,
                "attempt": record.attempt,
            }).scalar_one()
        except IntegrityError as error:
            if is_correlation_conflict(error):
                raise DuplicateOrder(record.correlation_id) from error
            raise
        self._add_lines(order_id, record)
        return order_id

    def settle(self, record: OrderRecord) -> int | None:
        order_id = self._connection.execute(SETTLE_ORDER, {
            "settle_correlation_id": record.correlation_id, "settle_attempt": record.attempt,
            "status": record.status.value, "total": record.total, "currency": record.currency,
            "reason": record.reason, "updated_at": record.at,
        }).scalar_one_or_none()
        if order_id is not None:
            self._add_lines(order_id, record)
        return order_id

    def reopen(self, correlation_id: str, failed_attempt: int, at: datetime) -> bool:
        result = self._connection.execute(REOPEN_ORDER, {
            "reopen_correlation_id": correlation_id, "failed_attempt": failed_attempt, "updated_at": at})
        return result.rowcount == 1

    def _add_lines(self, order_id: int, record: OrderRecord) -> None:
        if record.lines:
            self._connection.execute(INSERT_LINES, [
                {"order_id": order_id, "line_no": number, "sku": line.sku, "quantity": line.quantity,
                 "unit_price": line.unit_price}
                for number, line in enumerate(record.lines, start=1)
            ])


class SqlUnitOfWork:
    """``UnitOfWork`` on an engine: one connection and one transaction per ``with`` block.

    Database errors that a retry can cure (connection lost, locked, deadlock, Azure SQL throttling) leave
    the block as ``TransientError``; other errors propagate unchanged.
    """

    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._connection: Connection | None = None
        self._write_lock = None if read_only else process_write_lock(engine)
        self._holds_write_lock = False

    @classmethod
    def factory(cls, engine: Engine) -> UnitOfWorkFactory:
        """A ``UnitOfWorkFactory`` for the handlers: ``process_order(cmd, uow_factory=SqlUnitOfWork.factory(engine), ...)``."""
        return partial(cls, engine)

    @property
    def orders(self) -> SqlOrderStore:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open: use it in a `with` block")
        return SqlOrderStore(self._connection)

    @property
    def dead_letters(self) -> SqlDeadLetterStore:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open: use it in a `with` block")
        return SqlDeadLetterStore(self._connection)

    def __enter__(self) -> Self:
        if self._write_lock is not None and not self._write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_SECONDS):
            raise TransientError(f"the order database is busy: no write turn within {SQLITE_BUSY_TIMEOUT_SECONDS:.0f}s, "
                                 "retry later")
        self._holds_write_lock = self._write_lock is not None
        try:
            connection = self._engine.connect()
            if self._read_only:
                connection = connection.execution_options(**{READ_ONLY_OPTION: True})
            self._connection = connection
        except BaseException as error:
            self._release()
            if isinstance(error, DBAPIError):
                raise _translated(error) from error
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, self._connection = self._connection, None
        try:
            if connection is not None:
                try:
                    connection.close()  # rolls back whatever was not committed
                except DBAPIError:
                    if exc is None:
                        raise
        finally:
            self._release()
        if isinstance(exc, DBAPIError):
            translated = _translated(exc)
            if translated is not exc:
                raise translated from exc

    def commit(self) -> None:
        self._require().commit()

    def _release(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            self._write_lock.release()  # type: ignore[union-attr]

    def rollback(self) -> None:
        self._require().rollback()

    def _require(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open: use it in a `with` block")
        return self._connection


def _product(row: object) -> Product:
    return Product(sku=row.sku, name=row.name, unit_price=row.unit_price,  # type: ignore[attr-defined]
                   currency=row.currency, stock=row.stock)  # type: ignore[attr-defined]


def is_correlation_conflict(error: IntegrityError) -> bool:
    """True when the violated constraint is the unique key on ``orders.correlation_id`` (each engine words it
    differently: SQLite names the column, PostgreSQL and SQL Server the constraint)."""
    text = str(error.orig)
    return CORRELATION_UNIQUE in text or "orders.correlation_id" in text


def is_transient(error: DBAPIError) -> bool:
    """True for database errors that may go away on their own, so the work should be retried."""
    if error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError)):
        return True
    return bool(_MSSQL_TRANSIENT.search(str(error.orig)))


def _translated(error: DBAPIError) -> BaseException:
    if is_transient(error):
        return TransientError(f"the order database is unavailable, retry later: {error.orig}")
    return error
