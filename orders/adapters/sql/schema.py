"""The one schema of the order store, for SQLite, PostgreSQL and Azure SQL alike.

The Alembic revisions in ``migrations/`` create exactly these tables (a test compares them); application code
uses these ``Table`` objects to build its statements.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Unicode,
    UnicodeText,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Named constraints: the names are identical on every engine, so migrations and error handling can rely on them.
metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC instant stored as a plain timestamp (no offset) and read back timezone-aware.

    The three engines disagree on offset-carrying types (SQLite has none, pyodbc needs a converter for
    ``DATETIMEOFFSET``); storing UTC without an offset behaves the same everywhere.
    """

    # SQL Server's legacy DATETIME rounds to 1/300 s; DATETIME2 keeps microseconds like the other engines.
    impl = DateTime(timezone=False).with_variant(mssql.DATETIME2(precision=6), "mssql")
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps stored in the order store must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


#: ``BIGINT`` identity on PostgreSQL and SQL Server; on SQLite only ``INTEGER PRIMARY KEY`` is the rowid alias.
OrderIdType = BigInteger().with_variant(Integer(), "sqlite")

Money = Numeric(12, 2, asdecimal=True)
Amount = Numeric(18, 2, asdecimal=True)

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", Unicode(200), nullable=False),
    Column("unit_price", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("stock", Integer, nullable=False),
    CheckConstraint("stock >= 0", name="stock_not_negative"),
    CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
)

ORDER_STATUSES_CHECK = "status IN ('Accepted', 'Completed', 'Rejected', 'Failed')"

orders = Table(
    "orders",
    metadata,
    Column("order_id", OrderIdType, Identity(), primary_key=True),
    Column("correlation_id", String(36), nullable=False),
    Column("customer_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("total", Amount, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("reason", Unicode(1000), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # 1 as placed; a replay of the order's dead letter reopens it as ``Accepted`` at the next attempt.
    Column("attempt", Integer, nullable=False, server_default=text("1")),
    UniqueConstraint("correlation_id"),
    CheckConstraint(ORDER_STATUSES_CHECK, name="status_known"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", OrderIdType, ForeignKey("orders.order_id", ondelete="CASCADE"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("sku", String(64), ForeignKey("products.sku"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Money, nullable=False),
    PrimaryKeyConstraint("order_id", "line_no"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)

#: Every message the dead-letter queue delivered, kept before it is completed there (orders.domain.dead_letters).
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("dead_letter_id", OrderIdType, Identity(), primary_key=True),
    Column("message_id", String(128), nullable=False),
    Column("sequence_number", BigInteger, nullable=False),  # -1 when the broker gave none
    Column("correlation_id", String(36), nullable=True),
    Column("customer_id", String(64), nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("message_properties", UnicodeText, nullable=False),  # JSON object
    Column("application_properties", UnicodeText, nullable=False),  # JSON object
    Column("reason", Unicode(256), nullable=True),
    Column("description", Unicode(4000), nullable=True),
    Column("delivery_count", Integer, nullable=False),
    Column("enqueued_at", UtcDateTime(), nullable=True),
    Column("dead_lettered_at", UtcDateTime(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("replay_attempt", Integer, nullable=True),
    Column("replayed_body", LargeBinary, nullable=True),
    UniqueConstraint("message_id", "sequence_number"),
    CheckConstraint("state IN ('Kept', 'Replayed', 'Discarded')", name="state_known"),
    Index(None, "correlation_id"),
    Index(None, "dead_lettered_at"),
)

#: The audit: who did what to which dead letter, when and why.
dead_letter_actions = Table(
    "dead_letter_actions",
    metadata,
    Column("action_id", OrderIdType, Identity(), primary_key=True),
    Column("dead_letter_id", OrderIdType, ForeignKey("dead_letters.dead_letter_id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("actor", Unicode(256), nullable=False),
    Column("why", Unicode(1000), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("attempt", Integer, nullable=True),
    Column("correlation_id", String(36), nullable=True),
    Index(None, "dead_letter_id"),
)

#: Name of the unique constraint whose violation means "this order was already processed".
CORRELATION_UNIQUE = "uq_orders_correlation_id"
