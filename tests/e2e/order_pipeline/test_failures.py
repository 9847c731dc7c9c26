"""What happens to orders when parts of the system fail: the host killed mid-flight, the broker down,
processing not yet running. Each test gets its own stack, since each breaks it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from local_stack.stack import LocalStack, StackPorts
from local_servers.orders_api import BackendAndOperatorAuth, OrdersDatabase, order_body, wait_for_final_status

pytestmark = pytest.mark.e2e


def _stack(tmp_path: Path, **options: object) -> LocalStack:
    stack = LocalStack(tmp_path / "stack", StackPorts.free(websocket_instances=0), environ={}, telemetry=False, **options)
    stack.start()
    return stack


async def _submit_many(stack: LocalStack, count: int, customers: int) -> list[str]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30,
                                 auth=BackendAndOperatorAuth(stack.identity_url)) as client:
        responses = await asyncio.gather(*(
            client.post("/orders", json=order_body(f"c-{n % customers}", ("SKU-3", 1))) for n in range(count)))
    assert [r.status_code for r in responses] == [202] * count
    return [r.json()["correlationId"] for r in responses]


INTAKE_ONLY = ["submit_order", "get_order_status", "list_products", "health", "readiness"]


def _wait_for_orders(database: OrdersDatabase, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while (count := int(database.scalar("SELECT count(*) FROM orders"))) < at_least:
        assert time.monotonic() < deadline, f"only {count} orders were processed in {timeout:.0f}s"
        time.sleep(0.01)
    return count


def test_kill_9_of_the_host_with_200_orders_in_flight_loses_and_repeats_nothing(tmp_path: Path) -> None:
    # All 200 are queued by an intake-only host first, so that the kill comes while processing is under
    # way however fast or slow intake is on this machine.
    stack = _stack(tmp_path, host_functions=INTAKE_ONLY)
    try:
        database = OrdersDatabase.sqlite(stack.data_dir / "orders.db")
        stock_before = database.stock("SKU-3")
        accepted = asyncio.run(_submit_many(stack, 200, customers=20))
        stack.host.stop()
        stack.start_host(functions=[])  # all functions, processing included

        _wait_for_orders(database, at_least=10)
        stack.host.kill()  # SIGKILL while most orders are still queued or half-processed
        processed_before_kill = int(database.scalar("SELECT count(*) FROM orders"))
        stack.start_host()

        with httpx.Client(base_url=stack.api_url, timeout=30, auth=BackendAndOperatorAuth(stack.identity_url)) as api:
            finals = [wait_for_final_status(api, cid, timeout=120) for cid in accepted]
        assert processed_before_kill < 200, "the kill came too late to interrupt anything"
        assert {final["status"] for final in finals} == {"Completed"}
        assert len({final["orderId"] for final in finals}) == 200
        assert int(database.scalar("SELECT count(*) FROM orders")) == 200
        assert int(database.scalar("SELECT count(*) FROM order_lines")) == 200
        assert database.stock("SKU-3") == stock_before - 200
        database.close()
    finally:
        stack.stop()


def test_status_is_accepted_before_processing_and_the_order_is_processed_once_it_runs(tmp_path: Path) -> None:
    stack = _stack(tmp_path, host_functions=INTAKE_ONLY)
    try:
        with httpx.Client(base_url=stack.api_url, timeout=30, auth=BackendAndOperatorAuth(stack.identity_url)) as api:
            correlation_id = api.post("/orders", json=order_body("c-later")).json()["correlationId"]
            waiting = api.get(f"/orders/{correlation_id}")
            assert waiting.status_code == 200
            assert waiting.json()["status"] == "Accepted" and waiting.json()["orderId"] is None

            stack.host.stop()
            stack.start_host(functions=[])  # all functions, processing included
            assert wait_for_final_status(api, correlation_id)["status"] == "Completed"
    finally:
        stack.stop()


def test_with_the_broker_down_intake_answers_503_and_accepts_again_once_it_is_back(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    try:
        with httpx.Client(base_url=stack.api_url, timeout=60, auth=BackendAndOperatorAuth(stack.identity_url)) as api:
            assert api.post("/orders", json=order_body("c-outage")).status_code == 202
            stack.broker.stop()

            refused = api.post("/orders", json=order_body("c-outage"))
            health = api.get("/internal/ready")

            assert refused.status_code == 503
            assert refused.headers["retry-after"].isdigit()
            problem = refused.json()
            # The link was open when the broker went away: whether anything reached it is unknown, so the
            # answer must say so and hand over the key whose retry is the same order.
            assert problem["type"] in ("urn:orders:problem:unavailable", "urn:orders:problem:acceptance-unknown")
            retry_headers = {}
            if problem["type"].endswith("acceptance-unknown"):
                assert "Idempotency-Key" in problem["detail"] and problem["idempotencyKey"]
                retry_headers = {"Idempotency-Key": problem["idempotencyKey"]}
            else:
                assert "retry" in problem["detail"]
            # No broker, driver or host detail in the body; an error id the log line carries too.
            error_id = refused.json()["errorId"]
            assert str(stack.ports.broker) not in refused.text and "127.0.0.1" not in refused.text
            assert error_id in (stack.log_dir / "host.log").read_text()
            assert health.status_code == 503 and "broker" in health.json()["detail"]

            stack.start_broker()
            deadline = time.monotonic() + 60
            while (response := api.post("/orders", json=order_body("c-outage"),
                                        headers=retry_headers)).status_code != 202:
                assert time.monotonic() < deadline, f"intake did not recover: {response.text}"
                time.sleep(0.5)
            if retry_headers:
                assert response.json()["correlationId"] == problem["correlationId"], "the retry is the same order"
            assert wait_for_final_status(api, response.json()["correlationId"])["status"] == "Completed"
    finally:
        stack.stop()
