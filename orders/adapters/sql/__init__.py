"""SQL persistence of orders and the catalog (SQLAlchemy 2 Core; SQLite, PostgreSQL, Azure SQL).

Public interface:
- ``create_engine_for(settings)``: the engine for ``SQL_URL`` (and ``SQL_ENTRA_AUTH``); connects lazily.
- ``SqlUnitOfWork.factory(engine)``: the ``uow_factory`` the handlers take.
- ``migrate(url | engine=...)``, ``migration_sql(url)``: Alembic migrations online and offline.
- ``seed_catalog(engine)``: the demo catalog from ``catalog_seed.json``, idempotent.
- ``python -m orders.adapters.sql migrate|seed|sql --url URL``: the same from the command line.
"""

from orders.adapters.sql.engine import create_engine_for
from orders.adapters.sql.migrate import migrate, migration_sql
from orders.adapters.sql.seed import seed_catalog
from orders.adapters.sql.store import SqlOrderStore, SqlUnitOfWork

__all__ = ["SqlOrderStore", "SqlUnitOfWork", "create_engine_for", "migrate", "migration_sql", "seed_catalog"]
