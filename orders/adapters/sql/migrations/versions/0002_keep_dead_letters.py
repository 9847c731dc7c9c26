"""Keep dead letters and their audit; orders get an attempt number and may be Accepted again (a replay).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

from orders.adapters.sql.schema import ORDER_STATUSES_CHECK, OrderIdType, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_OLD_STATUSES_CHECK = "status IN ('Completed', 'Rejected', 'Failed')"


def _recreating_orders_on_sqlite(alter: Callable[[BatchOperations], None]) -> None:
    """Alter ``orders``; SQLite cannot alter a constraint, so batch mode copies the table there (reflection
    does not carry its CHECK over) and drops the old one. With foreign keys on, that drop would cascade to
    ``order_lines``, and ``PRAGMA foreign_keys`` cannot change inside the migration's transaction: the lines
    are put aside and back."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE TEMPORARY TABLE order_lines_kept AS SELECT * FROM order_lines")
    with op.batch_alter_table("orders") as batch:
        if not sqlite:
            batch.drop_constraint(op.f("ck_orders_status_known"), type_="check")
        alter(batch)
    if sqlite:
        op.execute("DELETE FROM order_lines")
        op.execute("INSERT INTO order_lines SELECT * FROM order_lines_kept")
        op.execute("DROP TABLE order_lines_kept")


def upgrade() -> None:
    def add_attempt(batch: BatchOperations) -> None:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("1")))
        batch.create_check_constraint(op.f("ck_orders_status_known"), ORDER_STATUSES_CHECK)

    _recreating_orders_on_sqlite(add_attempt)
    op.create_table(
        "dead_letters",
        sa.Column("dead_letter_id", OrderIdType, sa.Identity(), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("correlation_id", sa.String(36), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("message_properties", sa.UnicodeText(), nullable=False),
        sa.Column("application_properties", sa.UnicodeText(), nullable=False),
        sa.Column("reason", sa.Unicode(256), nullable=True),
        sa.Column("description", sa.Unicode(4000), nullable=True),
        sa.Column("delivery_count", sa.Integer(), nullable=False),
        sa.Column("enqueued_at", UtcDateTime(), nullable=True),
        sa.Column("dead_lettered_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("replay_attempt", sa.Integer(), nullable=True),
        sa.Column("replayed_body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("dead_letter_id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("message_id", "sequence_number", name=op.f("uq_dead_letters_message_id")),
        sa.CheckConstraint("state IN ('Kept', 'Replayed', 'Discarded')", name=op.f("ck_dead_letters_state_known")),
    )
    op.create_index(op.f("ix_dead_letters_correlation_id"), "dead_letters", ["correlation_id"])
    op.create_index(op.f("ix_dead_letters_dead_lettered_at"), "dead_letters", ["dead_lettered_at"])
    op.create_table(
        "dead_letter_actions",
        sa.Column("action_id", OrderIdType, sa.Identity(), nullable=False),
        sa.Column("dead_letter_id", OrderIdType, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.Unicode(256), nullable=False),
        sa.Column("why", sa.Unicode(1000), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("correlation_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("action_id", name=op.f("pk_dead_letter_actions")),
        sa.ForeignKeyConstraint(["dead_letter_id"], ["dead_letters.dead_letter_id"],
                                name=op.f("fk_dead_letter_actions_dead_letter_id_dead_letters")),
    )
    op.create_index(op.f("ix_dead_letter_actions_dead_letter_id"), "dead_letter_actions", ["dead_letter_id"])


def downgrade() -> None:
    op.drop_table("dead_letter_actions")
    op.drop_table("dead_letters")
    op.execute("UPDATE orders SET status = 'Failed' WHERE status = 'Accepted'")  # a replay under way is lost

    def drop_attempt(batch: BatchOperations) -> None:
        batch.drop_column("attempt")
        batch.create_check_constraint(op.f("ck_orders_status_known"), _OLD_STATUSES_CHECK)

    _recreating_orders_on_sqlite(drop_attempt)
