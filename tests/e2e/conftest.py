"""The whole system as real processes on free ports (broker, Redis, SQLite, local Functions host)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local_stack.stack import LocalStack, StackPorts
from local_servers.orders_api import BackendAndOperatorAuth, OrdersDatabase


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack per test module (starting one takes a few seconds); no WebSocket service."""
    running = LocalStack(Path(tmp_path_factory.mktemp("stack")), StackPorts.free(websocket_instances=0), environ={},
                         telemetry=False)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30, auth=BackendAndOperatorAuth(stack.identity_url)) as client:
        yield client


@pytest.fixture
def database(stack: LocalStack) -> Iterator[OrdersDatabase]:
    db = OrdersDatabase.sqlite(stack.data_dir / "orders.db")
    yield db
    db.close()
