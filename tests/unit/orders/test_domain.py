"""The business rules of order processing, and the core's independence from frameworks."""

import json
import subprocess
import sys
import uuid
from pathlib import Path
from datetime import UTC, datetime
from decimal import Decimal

from orders.json_contracts import order_message_json, status_json
from orders.domain import (
    OrderLine,
    OrderMessage,
    OrderStatus,
    OrderStatusChanged,
    PricedOrder,
    Product,
    Rejection,
    correlation_id_for,
    merge_quantities,
    price_order,
)
from orders.domain.model import OrderOutcome

CATALOG = {
    "SKU-1": Product("SKU-1", "Espresso beans", Decimal("18.90"), "EUR", 5),
    "SKU-2": Product("SKU-2", "Filters", Decimal("4.99"), "EUR", 0),
    "SKU-USD": Product("SKU-USD", "Import", Decimal("1.10"), "USD", 9),
}


def test_total_is_catalog_price_times_quantity_in_exact_decimal():
    decision = price_order("EUR", [OrderLine("SKU-1", 3), OrderLine("SKU-2", 7)], CATALOG)
    assert isinstance(decision, PricedOrder)
    assert decision.total == Decimal("91.63")  # 56.70 + 34.93, no float rounding
    assert [line.amount for line in decision.lines] == [Decimal("56.70"), Decimal("34.93")]


def test_three_tenths_add_up_exactly():
    catalog = {"A": Product("A", "a", Decimal("0.10"), "EUR", 10)}
    decision = price_order("EUR", [OrderLine("A", 1), OrderLine("A", 1), OrderLine("A", 1)], catalog)
    assert decision.total == Decimal("0.30")


def test_unknown_skus_reject_the_order_naming_each_sku_once():
    decision = price_order("EUR", [OrderLine("NOPE", 1), OrderLine("SKU-1", 1), OrderLine("NOPE", 2),
                                   OrderLine("GONE", 1)], CATALOG)
    assert decision == Rejection("unknown SKU: NOPE, GONE")


def test_currency_must_match_the_catalog():
    decision = price_order("EUR", [OrderLine("SKU-1", 1), OrderLine("SKU-USD", 1)], CATALOG)
    assert isinstance(decision, Rejection)
    assert "SKU-USD" in decision.reason and "USD" in decision.reason and "EUR" in decision.reason


def test_quantities_are_merged_per_sku_in_one_global_order():
    lines = [OrderLine("b", 1), OrderLine("a", 2), OrderLine("b", 3)]
    assert merge_quantities(lines) == [("a", 2), ("b", 4)]


def test_correlation_id_is_stable_per_customer_and_idempotency_key():
    first = correlation_id_for("c-1", "key-1", b"secret")
    assert first == correlation_id_for("c-1", "key-1", b"secret")
    assert uuid.UUID(first).version == 4
    assert correlation_id_for("c-2", "key-1", b"secret") != first
    assert correlation_id_for("c-1", "key-2", b"secret") != first
    assert correlation_id_for("c-1", "key-1", b"another secret") != first
    # No key: every request is a new order.
    assert uuid.UUID(correlation_id_for("c-1", None, b"secret")).version == 4
    assert correlation_id_for("c-1", None, b"secret") != correlation_id_for("c-1", None, b"secret")


def test_queue_message_follows_the_v1_contract():
    message = OrderMessage("0d3c1d4e-6f10-4c1c-9a3b-5f2f7f0f9c11", "c-1", "EUR", (OrderLine("SKU-1", 2),),
                           datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), traceparent="00-abc-def-01")
    assert order_message_json(message) == {
        "schemaVersion": 1,
        "correlationId": "0d3c1d4e-6f10-4c1c-9a3b-5f2f7f0f9c11",
        "customerId": "c-1",
        "currency": "EUR",
        "items": [{"sku": "SKU-1", "quantity": 2}],
        "acceptedAt": "2026-01-02T03:04:05.678Z",
    }
    assert message.deduplication_key == "0d3c1d4e-6f10-4c1c-9a3b-5f2f7f0f9c11"
    assert message.ordering_key == "c-1"


def test_status_event_follows_the_contract():
    outcome = OrderOutcome("cid", OrderStatus.COMPLETED, 42, Decimal("91.63"), "EUR", None,
                           datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    event = OrderStatusChanged(outcome)
    assert json.loads(json.dumps(status_json(event.outcome))) == {
        "correlationId": "cid", "status": "Completed", "orderId": 42, "total": "91.63", "currency": "EUR",
        "reason": None, "updatedAt": "2026-01-02T03:04:05.000Z", "attempt": 1,
    }
    assert event.deduplication_key == "cid:Completed"


def test_a_replayed_attempt_has_its_own_deduplication_keys():
    """Otherwise the queue's duplicate detection would drop attempt 2's message and its Failed event as
    repeats of attempt 1's (both within the detection window)."""
    outcome = OrderOutcome("cid", OrderStatus.FAILED, None, None, "EUR", "down",
                           datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), attempt=2)
    assert OrderStatusChanged(outcome).deduplication_key == "cid:Failed:2"
    message = OrderMessage("cid", "c-1", "EUR", (OrderLine("SKU-1", 1),), datetime(2026, 1, 2, tzinfo=UTC),
                           attempt=2)
    assert (message.deduplication_key, message.ordering_key) == ("cid:2", "c-1")


def test_order_id_only_when_completed():
    from orders.domain.model import OrderRecord

    at = datetime(2026, 1, 2, tzinfo=UTC)
    assert OrderRecord("c", "k", OrderStatus.REJECTED, "EUR", None, "no stock", at).outcome(7).order_id is None
    assert OrderRecord("c", "k", OrderStatus.COMPLETED, "EUR", Decimal("1.00"), None, at).outcome(7).order_id == 7


def test_the_core_imports_no_framework():
    """Imports the core in a fresh interpreter: this test process has SQLAlchemy and pydantic loaded already."""
    probe = (
        "import sys, json\n"
        "import orders.domain, orders.domain.ports, orders.service_layer\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                       text=True, cwd=Path(__file__).resolve().parents[3]).stdout)
    forbidden = ("azure", "sqlalchemy", "redis", "pydantic", "pydantic_core", "http", "httpx", "starlette",
                 "alembic", "psycopg", "pyodbc")
    leaked = [name for name in loaded if name.split(".")[0] in forbidden]
    assert leaked == []
    assert "orders.service_layer.handlers" in loaded
