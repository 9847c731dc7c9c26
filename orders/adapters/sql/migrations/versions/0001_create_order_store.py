"""Create the order store: products, orders, order_lines.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from orders.adapters.sql.schema import Amount, Money, OrderIdType, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.Unicode(200), nullable=False),
        sa.Column("unit_price", Money, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_products")),
        sa.CheckConstraint("stock >= 0", name=op.f("ck_products_stock_not_negative")),
        sa.CheckConstraint("unit_price >= 0", name=op.f("ck_products_unit_price_not_negative")),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", OrderIdType, sa.Identity(), nullable=False),
        sa.Column("correlation_id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", Amount, nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("reason", sa.Unicode(1000), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_orders")),
        sa.UniqueConstraint("correlation_id", name=op.f("uq_orders_correlation_id")),
        sa.CheckConstraint("status IN ('Completed', 'Rejected', 'Failed')", name=op.f("ck_orders_status_known")),
    )
    op.create_table(
        "order_lines",
        sa.Column("order_id", OrderIdType, nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", Money, nullable=False),
        sa.PrimaryKeyConstraint("order_id", "line_no", name=op.f("pk_order_lines")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], name=op.f("fk_order_lines_order_id_orders"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"], name=op.f("fk_order_lines_sku_products")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_lines_quantity_positive")),
    )


def downgrade() -> None:
    op.drop_table("order_lines")
    op.drop_table("orders")
    op.drop_table("products")
