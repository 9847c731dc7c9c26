"""``python -m orders.adapters.sql migrate|seed|sql [--url URL]``: set up the order store.

- ``migrate``: upgrade the schema to the newest revision.
- ``seed``: migrate, then add the demo catalog's missing products (existing rows are left alone).
- ``sql``: print the migration DDL for the URL's dialect without connecting (e.g. ``--url mssql+pyodbc://``).

``--url`` defaults to the ``SQL_URL`` environment variable, then to the local default. ``SQL_ENTRA_AUTH=true``
is honoured as by the function app.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from orders.adapters.sql.engine import create_engine_for
from orders.adapters.sql.migrate import migrate, migration_sql
from orders.adapters.sql.seed import CATALOG_SEED, seed_catalog

LOCAL_DEFAULT_URL = "sqlite:///.local/orders.db"


class _CliSettings:
    def __init__(self, url: str) -> None:
        self.sql_url = url
        self.sql_entra_auth = os.environ.get("SQL_ENTRA_AUTH", "false").strip().lower() in {"1", "true", "yes"}
        self.azure_client_id = os.environ.get("AZURE_CLIENT_ID") or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orders.adapters.sql", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["migrate", "seed", "sql"])
    parser.add_argument("--url", default=os.environ.get("SQL_URL", LOCAL_DEFAULT_URL),
                        help="SQLAlchemy URL (default: $SQL_URL, else %(default)s)")
    parser.add_argument("--catalog", type=Path, default=CATALOG_SEED, help="seed file (default: %(default)s)")
    args = parser.parse_args(argv)

    if args.action == "sql":
        sys.stdout.write(migration_sql(args.url))
        return 0
    engine = create_engine_for(_CliSettings(args.url))
    try:
        migrate(engine=engine)
        added = seed_catalog(engine, args.catalog) if args.action == "seed" else 0
    finally:
        engine.dispose()
    done = {"migrate": "order store migrated", "seed": "order store migrated and seeded"}[args.action]
    print(json.dumps({"event": done, "url": engine.url.render_as_string(),
                      "productsAdded": added}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
