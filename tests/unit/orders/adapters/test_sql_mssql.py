"""What Azure SQL gets from the store: the T-SQL that SQLAlchemy's mssql dialect compiles for the key
statements and the migration, and the Entra ID access token on the ODBC connection.

No SQL Server can run here, so these tests stop at the boundary: compiled SQL text and the arguments handed
to ``pyodbc.connect``.
"""

import json
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.schema import CreateTable

from orders.adapters.sql import create_engine_for, migration_sql
from orders.adapters.sql.engine import AZURE_SQL_SCOPE, SQL_COPT_SS_ACCESS_TOKEN, access_token_struct
from orders.adapters.sql.schema import orders, products
from orders.adapters.sql.store import (
    INSERT_ORDER,
    RESERVE_STOCK,
    SELECT_ORDER,
    is_correlation_conflict,
    is_transient,
)

REPO = Path(__file__).resolve().parents[4]
AZURE_URL = ("mssql+pyodbc://@my-server.database.windows.net/orders"
             "?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes")
# The dialect exactly as the Azure SQL engine gets it (pyodbc's qmark parameters); making it connects nowhere.
DIALECT = create_engine(AZURE_URL).dialect


def tsql(statement, **kwargs):
    compiled = statement.compile(dialect=DIALECT, **kwargs)
    return " ".join(str(compiled).split()), compiled


def test_stock_reservation_is_one_conditional_update_that_hands_back_the_product():
    sql, compiled = tsql(RESERVE_STOCK)
    assert sql == ("UPDATE products SET stock=(products.stock - ?) OUTPUT inserted.sku, inserted.name, "
                   "inserted.unit_price, inserted.currency, inserted.stock "
                   "WHERE products.sku = ? AND products.stock >= ?")
    assert compiled.positiontup == ["reserve_quantity", "reserve_sku", "reserve_quantity"]


def test_order_insert_lets_the_database_generate_the_id_and_returns_it_with_output():
    keys = ["correlation_id", "customer_id", "status", "total", "currency", "reason", "created_at", "updated_at"]
    sql, _ = tsql(INSERT_ORDER, column_keys=keys)
    assert sql == ("INSERT INTO orders (correlation_id, customer_id, status, total, currency, reason, created_at, "
                   "updated_at) OUTPUT inserted.order_id VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def test_order_lookup_is_by_correlation_id():
    sql, _ = tsql(SELECT_ORDER)
    assert sql.endswith("FROM orders WHERE orders.correlation_id = ?")


def test_tables_use_identity_unique_key_and_checks():
    orders_ddl = " ".join(str(CreateTable(orders).compile(dialect=DIALECT)).split())
    assert "order_id BIGINT NOT NULL IDENTITY" in orders_ddl
    assert "CONSTRAINT uq_orders_correlation_id UNIQUE (correlation_id)" in orders_ddl
    assert "created_at DATETIME2(6) NOT NULL" in orders_ddl
    assert "reason NVARCHAR(1000) NULL" in orders_ddl
    products_ddl = " ".join(str(CreateTable(products).compile(dialect=DIALECT)).split())
    assert "unit_price NUMERIC(12, 2) NOT NULL" in products_ddl
    assert "CONSTRAINT ck_products_stock_not_negative CHECK (stock >= 0)" in products_ddl


def test_the_migration_renders_as_a_tsql_script_offline():
    script = migration_sql("mssql+pyodbc://")
    flat = " ".join(script.split())
    assert flat.startswith("BEGIN TRANSACTION;")
    assert "CREATE TABLE products (" in flat and "CREATE TABLE order_lines (" in flat
    assert "order_id BIGINT NOT NULL IDENTITY" in flat
    assert "CONSTRAINT uq_orders_correlation_id UNIQUE (correlation_id)" in flat
    assert ("CONSTRAINT fk_order_lines_order_id_orders FOREIGN KEY(order_id) REFERENCES orders (order_id) "
            "ON DELETE CASCADE") in flat
    assert "INSERT INTO alembic_version (version_num) OUTPUT inserted.version_num VALUES ('0001');" in flat
    assert flat.rstrip().endswith("COMMIT; GO")


def test_the_command_line_prints_the_same_script_without_a_server():
    result = subprocess.run([sys.executable, "-m", "orders.adapters.sql", "sql", "--url", "mssql+pyodbc://"],
                            cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout == migration_sql("mssql+pyodbc://")


def test_pyodbc_is_imported_only_when_an_azure_sql_engine_is_made():
    probe = (
        "import sys, json\n"
        "from orders.adapters.sql import create_engine_for\n"
        "class S: sql_entra_auth = False; sql_url = 'sqlite:///:memory:'\n"
        "create_engine_for(S()).dispose()\n"
        "before = 'pyodbc' in sys.modules\n"
        f"S.sql_url = {AZURE_URL!r}\n"
        "create_engine_for(S()).dispose()\n"
        "print(json.dumps([before, 'pyodbc' in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True,
                            timeout=60)
    assert json.loads(result.stdout) == [False, True]


def test_the_access_token_struct_is_length_prefixed_utf16():
    packed = access_token_struct("eyJ0")
    assert packed == struct.pack("<I", 8) + "eyJ0".encode("utf-16-le")
    assert packed == b"\x08\x00\x00\x00e\x00y\x00J\x000\x00"


class FakeCredential:
    """Stands in for azure-identity's credential: no Entra ID tenant is reachable from here."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str) -> SimpleNamespace:
        self.scopes.append(scopes)
        return SimpleNamespace(token=f"token-{len(self.scopes)}", expires_on=0)


class StopBeforeDriver(Exception):
    pass


def test_each_new_connection_carries_a_fresh_entra_token_and_no_other_credentials():
    """The engine's own connect path runs (URL → ODBC string → our hook); a listener added after ours
    records what ``pyodbc.connect`` would receive and stops there, since no ODBC driver or server is here.
    A fake credential replaces azure-identity's for the same reason."""
    credential = FakeCredential()
    settings = SimpleNamespace(sql_url=AZURE_URL, sql_entra_auth=True)
    engine = create_engine_for(settings, credential=credential)
    seen: list[tuple[list, dict]] = []

    @event.listens_for(engine, "do_connect")
    def capture(dialect, record, cargs, cparams):
        seen.append((list(cargs), dict(cparams)))
        raise StopBeforeDriver

    try:
        for _ in range(2):
            with pytest.raises(StopBeforeDriver):
                engine.connect()
    finally:
        engine.dispose()

    assert credential.scopes == [(AZURE_SQL_SCOPE,), (AZURE_SQL_SCOPE,)]
    (first_args, first_params), (_, second_params) = seen
    connection_string = first_args[0]
    assert "Server=my-server.database.windows.net" in connection_string
    assert "Database=orders" in connection_string
    assert "Encrypt=yes" in connection_string
    assert "trusted_connection" not in connection_string.lower()
    assert "uid=" not in connection_string.lower() and "pwd=" not in connection_string.lower()
    assert first_params["attrs_before"] == {SQL_COPT_SS_ACCESS_TOKEN: access_token_struct("token-1")}
    assert second_params["attrs_before"] == {1256: access_token_struct("token-2")}


def test_entra_auth_is_refused_for_engines_that_cannot_use_it():
    settings = SimpleNamespace(sql_url="postgresql+psycopg://db/orders", sql_entra_auth=True)
    with pytest.raises(ValueError, match="Azure SQL"):
        create_engine_for(settings, credential=FakeCredential())


def sql_server_error(kind, message):
    """A DBAPI error worded as pyodbc reports SQL Server errors: ``(SQLSTATE, text ending in (number))``."""
    return kind("INSERT ...", {}, Exception("42000", message))


@pytest.mark.parametrize("message", [
    "[40001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction (Process ID 57) was deadlocked on "
    "lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction. "
    "(1205) (SQLExecDirectW)",
    "[HY000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Database 'orders' on server 'my-server' is not "
    "currently available. Please retry the connection later. (40613) (SQLDriverConnect)",
    "[HY000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Resource ID : 1. The request limit for the "
    "database is 60 and has been reached. (10928) (SQLExecDirectW)",
])
def test_sql_server_deadlocks_and_azure_sql_throttling_are_retried(message):
    assert is_transient(sql_server_error(ProgrammingError, message))


def test_a_duplicate_correlation_id_on_sql_server_is_recognised_and_not_retried():
    error = sql_server_error(IntegrityError, (
        "[23000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Violation of UNIQUE KEY constraint "
        "'uq_orders_correlation_id'. Cannot insert duplicate key in object 'dbo.orders'. The duplicate key value "
        "is (0d3c1d4e-6f10-4c1c-9a3b-5f2f7f0f9c11). (2627) (SQLExecDirectW)"))
    assert is_correlation_conflict(error)
    assert not is_transient(error)
    other = sql_server_error(IntegrityError, (
        "[23000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The INSERT statement conflicted with the "
        "FOREIGN KEY constraint \"fk_order_lines_sku_products\". (547) (SQLExecDirectW)"))
    assert not is_correlation_conflict(other)


def test_a_replay_locks_its_dead_letter_row_on_sql_server_too():
    """SQL Server's dialect drops FOR UPDATE; without the hint two operators' replays would not wait for each
    other there (the second would be refused instead of answering with the first one's attempt)."""
    from orders.adapters.sql.dead_letter_store import select_dead_letter

    locked, _ = tsql(select_dead_letter(lock=True))
    plain, _ = tsql(select_dead_letter(lock=False))
    assert "FROM dead_letters WITH (UPDLOCK, ROWLOCK) WHERE dead_letters.dead_letter_id = ?" in locked
    assert "UPDLOCK" not in plain
