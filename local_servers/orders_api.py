"""Small helpers for driving the orders HTTP API from tests and benchmarks."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from local_identity.client import development_token
from sqlalchemy import create_engine, text

TERMINAL_STATUSES = frozenset({"Completed", "Rejected", "Failed"})


class BackendAndOperatorAuth(httpx.Auth):
    """Signs traffic that drives many customers in: orders as the development backend (which names the
    customer in the body), reads as the development operator (who may read any order)."""

    def __init__(self, identity_url: str) -> None:
        self._identity_url = identity_url
        self._tokens: dict[str, str] = {}

    def _token(self, who: str) -> str:
        if who not in self._tokens:
            self._tokens[who] = development_token(self._identity_url, None if who == "backend" else who)
        return self._tokens[who]

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {self._token('backend' if request.method == 'POST' else 'olivia')}"
        yield request


def order_body(customer: str = "c-1", *items: tuple[str, int], currency: str = "EUR") -> dict[str, object]:
    """A ``POST /api/orders`` body; one unit of SKU-1 when no items are given."""
    return {"customerId": customer, "currency": currency,
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in (items or (("SKU-1", 1),))]}


def wait_for_final_status(api: httpx.Client, correlation_id: str, timeout: float = 60.0) -> dict[str, object]:
    """Poll the status API until the order is Completed, Rejected or Failed."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/orders/{correlation_id}")
        if response.status_code == 200 and response.json()["status"] in TERMINAL_STATUSES:
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"order {correlation_id} has no final status after {timeout:.0f}s: {response.text}")
        time.sleep(0.1)


class OrdersDatabase:
    """Direct reads of the SQL store, to check what really was written."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    @classmethod
    def sqlite(cls, path: Path) -> OrdersDatabase:
        return cls(f"sqlite:///{path}")

    def scalar(self, sql: str, **params: object) -> object:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar_one()

    def stock(self, sku: str) -> int:
        return int(self.scalar("SELECT stock FROM products WHERE sku = :sku", sku=sku))

    def orders_for(self, correlation_id: str) -> int:
        return int(self.scalar("SELECT count(*) FROM orders WHERE correlation_id = :cid", cid=correlation_id))

    def close(self) -> None:
        self.engine.dispose()
