"""Alembic environment of the order store.

Run through ``orders.adapters.sql.migrate`` (or ``python -m orders.adapters.sql migrate``), which passes an
open connection made by ``create_engine_for`` (so SQLite gets its WAL and real transactions) or, offline,
just a URL whose dialect renders the DDL as a script.
"""

from __future__ import annotations

from alembic import context

from orders.adapters.sql.schema import metadata

config = context.config


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run the order store's migrations with orders.adapters.sql.migrate.migrate(url) "
            "or `python -m orders.adapters.sql migrate --url URL`")
    # DDL is transactional on all three engines once SQLite runs real transactions (see engine.py):
    # a failed revision leaves no half-made schema behind.
    context.configure(connection=connection, target_metadata=metadata, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
