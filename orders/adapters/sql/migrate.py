"""Schema migrations, callable from code: ``migrate(url)`` brings a database to the newest revision;
``migration_sql(url)`` renders the DDL for a database this machine cannot reach (Alembic offline mode)."""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from orders.adapters.sql.engine import create_engine_for

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str, output: io.StringIO | None = None) -> Config:
    """An Alembic ``Config`` for the order store at ``url`` (no ``alembic.ini`` needed)."""
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would trip over '%' in URL-encoded passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str | None = None, *, engine: Engine | None = None, revision: str = "head") -> None:
    """Upgrade the database at ``url`` (or behind ``engine``) to ``revision``. Safe to run again."""
    if engine is None:
        if url is None:
            raise ValueError("migrate needs a database URL or an engine")
        engine = create_engine_for(_PlainSettings(url))
        owned = True
    else:
        owned = False
    try:
        with engine.connect() as connection:
            config = alembic_config(str(engine.url) if url is None else url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
    finally:
        if owned:
            engine.dispose()


def migration_sql(url: str, revision: str = "head") -> str:
    """The DDL script that ``migrate`` would run, for the dialect of ``url`` (nothing is connected to)."""
    output = io.StringIO()
    command.upgrade(alembic_config(url, output), revision, sql=True)
    return output.getvalue()


class _PlainSettings:
    """Settings for an engine reached without Entra ID (URLs given on the command line or in tests)."""

    sql_entra_auth = False

    def __init__(self, url: str) -> None:
        self.sql_url = url
