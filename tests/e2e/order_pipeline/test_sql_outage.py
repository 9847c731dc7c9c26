"""The order database goes down while orders keep arriving: the stack on a private PostgreSQL server, which is
stopped while orders are accepted and started again a few seconds later.

Intake never touches SQL, so it keeps answering 202; processing meets the outage and retries with pauses, and once the server is back every accepted order ends Completed exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local_stack.stack import LocalStack, StackPorts
from local_servers.orders_api import BackendAndOperatorAuth, OrdersDatabase, order_body, wait_for_final_status
from local_servers.postgres_cluster import PostgresCluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ORDERS_DURING_OUTAGE = 24
CUSTOMERS = 6
OUTAGE_SECONDS = 3.0


@pytest.fixture
def stack_on_postgres(tmp_path: Path, postgres_cluster: PostgresCluster) -> Iterator[tuple[LocalStack, str]]:
    url = postgres_cluster.create_database()
    stack = LocalStack(tmp_path / "stack", StackPorts.free(websocket_instances=0), environ={"SQL_URL": url},
                       telemetry=False)
    try:
        stack.start()  # migrates and seeds the PostgreSQL database
        yield stack, url
    finally:
        stack.stop()
        if not postgres_cluster.running:  # the session's other tests need the server
            postgres_cluster.start()


def test_orders_accepted_while_postgresql_is_down_complete_exactly_once_after_it_returns(
        stack_on_postgres: tuple[LocalStack, str], postgres_cluster: PostgresCluster) -> None:
    stack, url = stack_on_postgres
    database = OrdersDatabase(url)
    try:
        with httpx.Client(base_url=stack.api_url, timeout=30, auth=BackendAndOperatorAuth(stack.identity_url)) as api:
            first = api.post("/orders", json=order_body("c-before", ("SKU-3", 1))).json()["correlationId"]
            assert wait_for_final_status(api, first)["status"] == "Completed"
            database.engine.dispose()  # no pooled connection of the test's own outlives the server
            stock_before = database.stock("SKU-3")
            database.engine.dispose()

            postgres_cluster.stop()
            try:
                outage_started = time.monotonic()
                responses = [
                    api.post("/orders", json=order_body(f"c-outage-{n % CUSTOMERS}", ("SKU-3", 2)))
                    for n in range(ORDERS_DURING_OUTAGE)
                ]
                health = api.get("/internal/ready")
                status_while_down = api.get(f"/orders/{responses[0].json()['correlationId']}")
                # Long enough for processing to meet the outage and back off, short enough for its first retry.
                time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
            finally:
                postgres_cluster.start()

            assert [response.status_code for response in responses] == [202] * ORDERS_DURING_OUTAGE
            assert health.status_code == 503 and "sql" in health.json()["detail"]
            assert health.json()["checks"]["broker"] == "ok"
            assert status_while_down.status_code == 503, "SQL down: the status is unknown, not 'not found'"

            accepted = [response.json()["correlationId"] for response in responses]
            finals = [wait_for_final_status(api, cid, timeout=60) for cid in accepted]

        assert [final["status"] for final in finals] == ["Completed"] * ORDERS_DURING_OUTAGE
        assert _retried_after_transient_failure(stack) & set(accepted), "processing never met the outage"
        assert len({final["orderId"] for final in finals}) == ORDERS_DURING_OUTAGE
        for cid in accepted:
            assert database.orders_for(cid) == 1, f"order {cid} was not stored exactly once"
        assert int(database.scalar("SELECT count(*) FROM orders")) == ORDERS_DURING_OUTAGE + 1
        assert int(database.scalar("SELECT count(*) FROM order_lines")) == ORDERS_DURING_OUTAGE + 1
        assert database.stock("SKU-3") == stock_before - 2 * ORDERS_DURING_OUTAGE
    finally:
        database.close()


def _retried_after_transient_failure(stack: LocalStack) -> set[str]:
    """CorrelationIds whose processing the host logged as retried because SQL was unavailable."""
    assert stack.host is not None
    retried = set()
    for line in stack.host.log_path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("level") == "WARNING" and "transient failure" in record.get("message", ""):
            retried.add(record.get("correlationId"))
    return retried


# An outage longer than functionTimeout, with every one of the host's 64 session slots busy: timings are
# shortened through settings (functionTimeout 4 s, a 2.5 s retry budget per delivery, MaxDeliveryCount 10).
LONG_OUTAGE_SECONDS = 10.0
SESSIONS = 64
ORDERS_PER_CUSTOMER = 3
SHORT_TIMINGS = {
    "AzureFunctionsJobHost__functionTimeout": "00:00:04",
    "PROCESSING_RETRY_BUDGET_SECONDS": "2.5",
    "PROCESSING_RETRY_BASE_SECONDS": "0.2",
    "PROCESSING_RETRY_MAX_SECONDS": "1",
}


def test_an_outage_longer_than_function_timeout_with_64_busy_sessions_dead_letters_nothing_and_keeps_fifo(
        tmp_path: Path, postgres_cluster: PostgresCluster) -> None:
    """The worker's default thread pool (min(32, cores + 4) threads, PYTHON_THREADPOOL_THREAD_COUNT unset)
    under 64 sessions that all meet the outage: no invocation times out, nothing is dead-lettered, every
    order ends Completed, and each customer's orders get their OrderIds in the order they were accepted."""
    url = postgres_cluster.create_database()
    # Tracing off: this one host runs every function, and with every trace sampled the spans of 64 sessions'
    # failing retries take enough of its one core that intake's invocations pass the 4 s functionTimeout.
    # In AKS the intake has pods of its own (docs/observability.md has what tracing costs).
    environ = {"SQL_URL": url, **SHORT_TIMINGS}
    stack = LocalStack(tmp_path / "stack", StackPorts.free(websocket_instances=0), environ=environ, telemetry=False)
    database = OrdersDatabase(url)
    try:
        stack.start()
        assert "PYTHON_THREADPOOL_THREAD_COUNT" not in stack.env
        with httpx.Client(base_url=stack.api_url, timeout=30, auth=BackendAndOperatorAuth(stack.identity_url)) as api:
            postgres_cluster.stop()
            try:
                outage_started = time.monotonic()
                accepted: dict[str, list[str]] = {f"c-fifo-{n}": [] for n in range(SESSIONS)}
                for _ in range(ORDERS_PER_CUSTOMER):
                    for customer, ids in accepted.items():
                        response = api.post("/orders", json=order_body(customer, ("SKU-3", 1)))
                        assert response.status_code == 202, response.text
                        ids.append(response.json()["correlationId"])
                time.sleep(max(0.0, LONG_OUTAGE_SECONDS - (time.monotonic() - outage_started)))
                outage = time.monotonic() - outage_started
            finally:
                postgres_cluster.start()
            finals = {cid: wait_for_final_status(api, cid, timeout=120) for ids in accepted.values() for cid in ids}

        assert outage > 2 * 4, "the outage outlasted functionTimeout twice over"
        assert {final["status"] for final in finals.values()} == {"Completed"}, "an order was dead-lettered"
        for customer, ids in accepted.items():
            order_ids = [int(finals[cid]["orderId"]) for cid in ids]
            assert order_ids == sorted(order_ids), f"{customer}'s orders were processed out of order: {order_ids}"
        records = _host_records(stack)
        assert not [r for r in records if "timed out" in r.get("message", "")], "an invocation hit functionTimeout"
        assert not [r for r in records if r.get("logger") == "local_functions_host.results"
                    and r.get("functionName") == "handle_dead_lettered_order"], "a message reached the dead letters"
        retried = {r.get("correlationId") for r in records if "giving the message back" in r.get("message", "")}
        assert retried, "no delivery spent its retry budget: the outage was too short to test redelivery"
        assert int(database.scalar("SELECT count(*) FROM orders")) == SESSIONS * ORDERS_PER_CUSTOMER
    finally:
        database.close()
        stack.stop()
        if not postgres_cluster.running:
            postgres_cluster.start()


def _host_records(stack: LocalStack) -> list[dict]:
    assert stack.host is not None
    return [json.loads(line) for line in stack.host.log_path.read_text(encoding="utf-8").splitlines()
            if line.startswith("{")]
