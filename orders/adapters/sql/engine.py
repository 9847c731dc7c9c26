"""``create_engine_for(settings)``: one SQLAlchemy engine per process, tuned for the engine behind ``SQL_URL``.

- SQLite (local default): WAL, a busy timeout, foreign keys on, and SQLAlchemy (not the sqlite3 module)
  emitting ``BEGIN``: ``BEGIN IMMEDIATE`` for writing units of work, so a transaction that reads and then
  writes never fails half-way on a lock upgrade, plain ``BEGIN`` for reads. Writers of one process queue on
  ``process_write_lock(engine)`` before they ask SQLite for its write lock.
- PostgreSQL: pre-ping, nothing else special.
- Azure SQL (``mssql+pyodbc``): with ``SQL_ENTRA_AUTH=true`` each new connection gets an Entra ID token from
  azure-identity as the ODBC ``SQL_COPT_SS_ACCESS_TOKEN`` attribute. pyodbc is imported only when such an
  engine is created.

Nothing here connects: the first connection is opened on first use.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
import weakref
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

#: Connection attribute of the Microsoft ODBC driver that carries an access token (msodbcsql.h).
SQL_COPT_SS_ACCESS_TOKEN = 1256
#: Token audience of Azure SQL Database.
AZURE_SQL_SCOPE = "https://database.windows.net/.default"
#: Execution option a unit of work sets to say it will not write (SQLite then emits a deferred ``BEGIN``).
READ_ONLY_OPTION = "orders_read_only"

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0

_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


def process_write_lock(engine: Engine) -> threading.Lock | None:
    """The lock a writing unit of work of this process holds around its transaction (SQLite only, else None).

    SQLite lets one writer in at a time, and a writer that finds the database locked polls with sleeps that
    grow to 100 ms, so threads contending for it wait far longer than the lock is held (a profile showed
    p99 waits of half a second at 200 orders/s). Queued on a lock, they take turns as soon as it is free.
    Other processes still meet SQLite's busy timeout.
    """
    return _write_locks.get(engine)


class SqlSettings(Protocol):
    """The part of ``orders.settings.OrderSettings`` the engine needs."""

    sql_url: str
    sql_entra_auth: bool


class TokenCredential(Protocol):
    """What the engine needs of an azure-identity credential."""

    def get_token(self, *scopes: str) -> Any: ...


def create_engine_for(
    settings: SqlSettings,
    *,
    credential: TokenCredential | None = None,
    sqlite_busy_timeout_seconds: float = SQLITE_BUSY_TIMEOUT_SECONDS,
) -> Engine:
    """The engine for ``settings.sql_url``.

    ``credential`` is used when ``settings.sql_entra_auth`` is true; by default a ``DefaultAzureCredential``
    (workload identity on AKS, managed identity, or a developer's ``az login``), restricted to
    ``settings.azure_client_id`` when that is set.
    """
    url = make_url(settings.sql_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, sqlite_busy_timeout_seconds)
    if backend == "mssql":
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800, fast_executemany=True)
        if settings.sql_entra_auth:
            install_entra_token(engine, credential or _default_credential(settings))
        return engine
    if settings.sql_entra_auth:
        raise ValueError(
            f"SQL_ENTRA_AUTH=true is supported for Azure SQL (mssql+pyodbc) only, not for {backend}: "
            "unset it or point SQL_URL at Azure SQL")
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout})
    _write_locks[engine] = threading.Lock()

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Stop the sqlite3 module from issuing BEGIN itself (it skips it before SELECTs and DDL);
        # the "begin" hook below issues it instead, so every transaction is a real one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            # Durable against process crashes (kill -9); an OS crash may lose the last commits, which is
            # acceptable for the local default and buys most of the write throughput.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        statement = "BEGIN" if connection.get_execution_options().get(READ_ONLY_OPTION, False) else "BEGIN IMMEDIATE"
        # On the driver's connection: a transaction's start is not a statement of the unit of work (no
        # statement events, so no SQL span), as on the other engines, whose drivers begin on their own.
        try:
            connection.connection.dbapi_connection.execute(statement)
        except sqlite3.Error as error:
            raise OperationalError(statement, None, error) from error

    return engine


def access_token_struct(token: str) -> bytes:
    """The ODBC access-token attribute value: a little-endian 4-byte length, then the token in UTF-16-LE."""
    raw = token.encode("utf-16-le")
    return struct.pack(f"<I{len(raw)}s", len(raw), raw)


def install_entra_token(engine: Engine, credential: TokenCredential) -> None:
    """Give every new connection of ``engine`` a fresh Entra ID token (azure-identity caches and renews it)."""

    @event.listens_for(engine, "do_connect")
    def _provide_token(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        # With no user name the dialect adds Trusted_Connection=Yes; the driver refuses a token alongside it
        # (or alongside UID/PWD/Authentication).
        cargs[0] = ";".join(
            part for part in cargs[0].split(";")
            if part.split("=", 1)[0].strip().lower() not in {"trusted_connection", "uid", "pwd", "authentication"}
        )
        token = credential.get_token(AZURE_SQL_SCOPE).token
        cparams["attrs_before"] = {**cparams.get("attrs_before", {}),
                                   SQL_COPT_SS_ACCESS_TOKEN: access_token_struct(token)}


def _default_credential(settings: SqlSettings) -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    client_id = getattr(settings, "azure_client_id", None)
    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()
