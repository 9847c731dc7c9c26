"""Dead letters an operator acts on, over real processes: the broker, the local Functions host, PostgreSQL or
SQLite, Redis, the WebSocket service, the development identity provider and ``python -m dead_letter_admin``."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from websockets.sync.client import connect

from local_identity.client import development_token
from local_servers.orders_api import BackendAndOperatorAuth, OrdersDatabase, order_body, wait_for_final_status
from local_servers.postgres_cluster import PostgresCluster
from local_stack.stack import ROOT, LocalStack, StackPorts
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

# Processing gives a message back after 0.3 s of retries, so an outage dead-letters an order within seconds.
SHORT_RETRIES = {"PROCESSING_RETRY_BUDGET_SECONDS": "0.3", "PROCESSING_RETRY_BASE_SECONDS": "0.05",
                 "PROCESSING_RETRY_MAX_SECONDS": "0.1"}


def admin(stack: LocalStack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The operators' tool, as an operator runs it against this stack."""
    return subprocess.run([sys.executable, "-m", "dead_letter_admin", "--api", stack.api_url,
                           "--dev-identity", stack.identity_url, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def dead_lettered(stack: LocalStack) -> int:
    with urllib.request.urlopen(stack.broker_status_url, timeout=5) as answer:
        return int(json.load(answer)["orders"]["deadLettered"])


def frames_until_terminal(socket, correlation_id: str, timeout: float = 60.0) -> list[dict]:
    frames: list[dict] = []
    deadline = time.monotonic() + timeout
    while not frames or frames[-1]["status"] not in ("Completed", "Rejected", "Failed"):
        frame = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        assert frame["type"] == "status" and frame["correlationId"] == correlation_id, frame
        frames.append(frame)
    return frames


@pytest.fixture
def stack_on_postgres(tmp_path: Path, postgres_cluster: PostgresCluster) -> Iterator[tuple[LocalStack, str]]:
    url = postgres_cluster.create_database()
    stack = LocalStack(tmp_path / "stack", StackPorts.free(websocket_instances=1),
                       environ={"SQL_URL": url, **SHORT_RETRIES}, telemetry=False)
    try:
        stack.start()
        yield stack, url
    finally:
        stack.stop()
        if not postgres_cluster.running:
            postgres_cluster.start()


@pytest.mark.postgres
def test_an_order_failed_by_an_outage_is_replayed_once_and_its_follower_sees_it_complete(
        stack_on_postgres: tuple[LocalStack, str], postgres_cluster: PostgresCluster) -> None:
    stack, url = stack_on_postgres
    database = OrdersDatabase(url)
    operator = httpx.Client(base_url=stack.api_url, timeout=30,
                            headers={"Authorization": f"Bearer {development_token(stack.identity_url, 'olivia')}"})
    try:
        with httpx.Client(base_url=stack.api_url, timeout=30, auth=BackendAndOperatorAuth(stack.identity_url)) as api, \
                contextlib.ExitStack() as sockets:
            stock_before = database.stock("SKU-3")
            database.engine.dispose()
            postgres_cluster.stop()
            try:
                accepted = api.post("/orders", json=order_body("c-outage", ("SKU-3", 2))).json()
                cid = accepted["correlationId"]
                socket = sockets.enter_context(connect(accepted["notifyUrl"]))  # follows it from the handshake on
                wait_until(lambda: dead_lettered(stack) >= 1, "the order's dead-lettering", timeout=60)
                time.sleep(1.0)  # the dead-letter handler meets the outage too: nothing may be lost meanwhile
            finally:
                postgres_cluster.start()

            first = frames_until_terminal(socket, cid)
            assert first[-1]["status"] == "Failed" and first[-1]["attempt"] == 1
            assert "MaxDeliveryCountExceeded" in first[-1]["reason"]

            listed = admin(stack, "list", "--reason", "MaxDeliveryCountExceeded", "--json")
            assert listed.returncode == 0, listed.stderr
            [kept] = json.loads(listed.stdout)
            assert (kept["correlationId"], kept["customerId"], kept["state"]) == (cid, "c-outage", "Kept")
            # Ten deliveries to processing, then more to the dead-letter handler while PostgreSQL was still down.
            assert kept["deliveryCount"] > 10
            detail = operator.get(f"/dead-letters/{kept['id']}").json()
            assert json.loads(detail["body"])["items"] == [{"sku": "SKU-3", "quantity": 2}]
            assert detail["applicationProperties"]["DeadLetterReason"] == "MaxDeliveryCountExceeded"
            assert detail["messageProperties"]["sessionId"] == "c-outage" and detail["enqueuedAt"]
            assert detail["order"]["status"] == "Failed"

            # Two operators at once, then the same command again: one new attempt.
            results: list[httpx.Response] = []
            threads = [threading.Thread(target=lambda: results.append(operator.post(
                f"/dead-letters/{kept['id']}/replay", json={"why": "PostgreSQL is back"}))) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert all(r.status_code in (200, 202) for r in results), [r.text for r in results]
            assert sorted(r.json()["started"] for r in results) == [False, True], [r.text for r in results]
            assert {r.json()["attempt"] for r in results} == {2}

            # The client learns of the replay by subscribing again: the current status, then the outcome.
            socket.send(json.dumps({"action": "subscribe", "correlationId": cid, "token": accepted["notifyToken"]}))
            second = frames_until_terminal(socket, cid)
            assert second[-1]["status"] == "Completed" and second[-1]["attempt"] == 2
            assert all(frame["attempt"] == 2 for frame in second)

            again = admin(stack, "replay", str(kept["id"]), "--why", "clicked again")
            assert again.returncode == 0 and "was replayed before (attempt 2)" in again.stdout, again.stdout
            final = wait_for_final_status(api, cid)
        assert (final["status"], final["attempt"]) == ("Completed", 2) and isinstance(final["orderId"], int)
        assert database.stock("SKU-3") == stock_before - 2, "stock must move exactly once"
        assert database.orders_for(cid) == 1
        assert int(database.scalar("SELECT count(*) FROM order_lines l JOIN orders o ON o.order_id = l.order_id "
                                   "WHERE o.correlation_id = :cid", cid=cid)) == 1
        audit = operator.get(f"/dead-letters/{kept['id']}").json()["actions"]
        assert [(a["kind"], a["actor"].split(" ")[0], a["why"], a["attempt"]) for a in audit] == [
            ("replay", "olivia@orders.local", "PostgreSQL is back", 2)]
    finally:
        operator.close()
        database.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # 16 session slots instead of 64: these tests use at most 20 customers at once, and fewer idle slots
    # polling for sessions leave the host's CPU to the dead-letter work being tested.
    running = LocalStack(Path(tmp_path_factory.mktemp("dead-letters")), StackPorts.free(websocket_instances=0),
                         environ={"CUSTOMER_MAX_ORDERS_IN_FLIGHT": "100000", "CUSTOMER_MAX_ORDERS_PER_MINUTE": "100000",
                                  "AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentSessions": "16"},
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


def order_message(correlation_id: str, customer: str, body: bytes | None = None, sku: str = "SKU-5") -> ServiceBusMessage:
    payload = body if body is not None else json.dumps({
        "schemaVersion": 1, "correlationId": correlation_id, "customerId": customer, "currency": "EUR",
        "items": [{"sku": sku, "quantity": 1}], "acceptedAt": "2026-01-01T00:00:00.000Z"}).encode()
    return ServiceBusMessage(payload, message_id=correlation_id, correlation_id=correlation_id, session_id=customer,
                             content_type="application/json")


def kept_for(stack: LocalStack, correlation_id: str) -> dict:
    listed = admin(stack, "list", "--correlation-id", correlation_id, "--json")
    assert listed.returncode == 0, listed.stderr
    [kept] = json.loads(listed.stdout)
    return kept


def test_a_poison_order_is_refused_for_replay_then_repaired_and_processed(stack: LocalStack, api) -> None:
    cid = str(uuid.uuid4())
    with ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_sender("orders") as sender:
        sender.send_messages(order_message(cid, "c-poison", body=b'{"schemaVersion": 1, "items": "lots"}'))
    assert wait_for_final_status(api, cid, timeout=90)["status"] == "Failed"
    kept = kept_for(stack, cid)

    refused = admin(stack, "replay", str(kept["id"]), "--why", "try again")
    assert refused.returncode == 1
    assert "409 Action refused" in refused.stderr and "repair it with a corrected body, or discard it" in refused.stderr

    invalid = stack.data_dir / "invalid.json"
    invalid.write_text(json.dumps({"customerId": "c-poison", "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 0}]}))
    rejected = admin(stack, "repair", str(kept["id"]), "--order", str(invalid), "--why", "fixed")
    assert rejected.returncode == 1 and "422" in rejected.stderr and "items[0].quantity: must be at least 1" in rejected.stderr

    fixed = stack.data_dir / "fixed.json"
    fixed.write_text(json.dumps({"customerId": "c-poison", "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 2}]}))
    repaired = admin(stack, "repair", str(kept["id"]), "--order", str(fixed), "--why", "items agreed with the customer")
    assert repaired.returncode == 0, repaired.stderr
    assert f"order {cid} is Accepted again as attempt 2" in repaired.stdout
    final = wait_for_final_status(api, cid)
    assert (final["status"], final["attempt"], final["total"] is not None) == ("Completed", 2, True)

    shown = admin(stack, "show", str(kept["id"]))
    assert "Replayed (replayed as attempt 2)" in shown.stdout and "repair   by olivia@orders.local" in shown.stdout


def test_a_discard_is_audited_and_a_completed_order_is_never_replayed(stack: LocalStack, api) -> None:
    done, dropped = str(uuid.uuid4()), str(uuid.uuid4())
    with ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_sender("orders") as sender:
        sender.send_messages(order_message(done, "c-done"))
        sender.send_messages(order_message(dropped, "c-dropped", body=b"{not json"))
    assert wait_for_final_status(api, done)["status"] == "Completed"
    assert wait_for_final_status(api, dropped, timeout=90)["status"] == "Failed"
    # A late copy of the completed order's message is dead-lettered by hand, as a stuck duplicate would be,
    # while the host is stopped (so it cannot process the copy first).
    stack.host.stop()
    try:
        with ServiceBusClient.from_connection_string(stack.connection_string) as client:
            with client.get_queue_sender("orders") as sender:
                message = order_message(done, "c-done")
                message.message_id = f"{done}:late"
                sender.send_messages(message)
            with client.get_queue_receiver("orders", session_id="c-done", max_wait_time=10) as receiver:
                [received] = receiver.receive_messages(max_message_count=1, max_wait_time=10)
                receiver.dead_letter_message(received, reason="Stuck", error_description="dead-lettered by hand")
    finally:
        stack.start_host()
    wait_until(lambda: len(json.loads(admin(stack, "list", "--correlation-id", done, "--json").stdout)) == 1,
               "keeping the late copy", timeout=60)

    refused = admin(stack, "replay", str(kept_for(stack, done)["id"]), "--why", "retry")
    assert refused.returncode == 1 and f"order {done} is Completed: only a Failed order is replayed" in refused.stderr

    kept = kept_for(stack, dropped)
    no_why = admin(stack, "discard", str(kept["id"]))
    assert no_why.returncode == 1 and "say why with --why" in no_why.stderr
    discarded = admin(stack, "discard", str(kept["id"]), "--why", "test message from a load tool")
    assert discarded.returncode == 0 and "is Discarded" in discarded.stdout
    detail = json.loads(admin(stack, "show", str(kept["id"]), "--json").stdout)
    assert detail["state"] == "Discarded" and detail["order"]["status"] == "Failed"
    assert [(a["kind"], a["why"]) for a in detail["actions"]] == [("discard", "test message from a load tool")]
    assert admin(stack, "replay", str(kept["id"]), "--why", "x").stderr.count("was discarded; it is never replayed") == 1


def test_only_operators_reach_dead_letters_and_the_tool_says_what_to_do(stack: LocalStack) -> None:
    alice = admin(stack, "--dev-user", "alice", "list")
    assert alice.returncode == 1 and "403" in alice.stderr and "needs the app role Orders.Admin" in alice.stderr
    unknown = admin(stack, "show", "999999")
    assert unknown.returncode == 1 and "404" in unknown.stderr and "list the dead letters to find the id" in unknown.stderr
    nobody = subprocess.run([sys.executable, "-m", "dead_letter_admin", "--api", "http://127.0.0.1:9/api",
                             "--token", "x", "list"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert nobody.returncode == 1 and "does not answer" in nobody.stderr and "--api or ORDERS_API_URL" in nobody.stderr


BULK = 1000
BULK_CUSTOMERS = 20
BULK_RATE = 200.0


def dead_letter_session(client: ServiceBusClient, session_id: str, count: int) -> None:
    """Take ``count`` messages of one session and dead-letter them, as the broker does after MaxDeliveryCount."""
    with client.get_queue_receiver("orders", session_id=session_id, max_wait_time=5) as receiver:
        taken = 0
        while taken < count:
            for message in receiver.receive_messages(max_message_count=count - taken, max_wait_time=5):
                receiver.dead_letter_message(message, reason="MaxDeliveryCountExceeded", error_description="SQL outage")
                taken += 1


def test_a_bulk_replay_of_1000_dead_letters_is_paced_shows_progress_and_completes_each_once(stack: LocalStack) -> None:
    """1,000 orders dead-lettered while the host is stopped (the broker's MaxDeliveryCountExceeded, given by
    hand), kept once the host is back, then replayed in bulk at 200/s."""
    database = OrdersDatabase.sqlite(stack.data_dir / "orders.db")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    cids = [str(uuid.uuid4()) for _ in range(BULK)]
    stock_before = database.stock("SKU-3")
    stack.host.stop()
    try:
        with ServiceBusClient.from_connection_string(stack.connection_string) as client:
            with client.get_queue_sender("orders") as sender:
                for start in range(0, BULK, 100):
                    sender.send_messages([order_message(cid, f"c-bulk-{n % BULK_CUSTOMERS}", sku="SKU-3")
                                          for n, cid in enumerate(cids[start:start + 100], start=start)])
            with ThreadPoolExecutor(10) as pool:  # one session per customer, ten at a time
                list(pool.map(lambda customer: dead_letter_session(client, f"c-bulk-{customer}", BULK // BULK_CUSTOMERS),
                              range(BULK_CUSTOMERS)))
    finally:
        stack.start_host()
    try:
        ids = ",".join(f"'{cid}'" for cid in cids)
        wait_until(lambda: int(database.scalar(f"SELECT count(*) FROM orders WHERE status = 'Failed' "
                                               f"AND correlation_id IN ({ids})")) == BULK, "keeping 1,000 dead letters",
                   timeout=120)

        dry = admin(stack, "replay", "--reason", "MaxDeliveryCountExceeded", "--since", since, "--dry-run")
        assert dry.returncode == 0 and f"{BULK} Kept dead letter(s) match; nothing was replayed" in dry.stdout
        unconfirmed = admin(stack, "replay", "--reason", "MaxDeliveryCountExceeded", "--since", since, "--why", "x")
        assert unconfirmed.returncode == 1 and "check them with --dry-run, then run again with --yes" in unconfirmed.stderr

        started = time.monotonic()
        bulk = admin(stack, "replay", "--reason", "MaxDeliveryCountExceeded", "--since", since, "--yes",
                     "--rate", str(BULK_RATE), "--why", "SQL outage is over", timeout=300)
        elapsed = time.monotonic() - started
        assert bulk.returncode == 0, bulk.stderr[-2000:]
        assert f"replayed: {BULK}, replayed before: 0, refused: 0" in bulk.stdout
        assert f"{BULK}/{BULK}" in bulk.stderr, "no progress bar"
        assert elapsed >= (BULK - 1) / BULK_RATE, f"{BULK} replays in {elapsed:.1f}s: faster than {BULK_RATE:g}/s"
        # The pace as the system saw it: the replays' audit times, per second.
        with database.engine.connect() as connection:
            per_second = connection.exec_driver_sql(
                "SELECT strftime('%Y-%m-%d %H:%M:%S', at) AS second, count(*) FROM dead_letter_actions "
                "WHERE kind = 'replay' AND why = 'SQL outage is over' GROUP BY second").all()
        assert sum(count for _, count in per_second) == BULK
        assert max(count for _, count in per_second) <= BULK_RATE + 8, f"a burst above the pace: {per_second}"

        wait_until(lambda: int(database.scalar(f"SELECT count(*) FROM orders WHERE status = 'Completed' AND attempt = 2 "
                                               f"AND correlation_id IN ({ids})")) == BULK, "1,000 completed orders",
                   timeout=180)
        assert int(database.scalar(f"SELECT count(*) FROM orders WHERE correlation_id IN ({ids})")) == BULK
        assert int(database.scalar(f"SELECT count(*) FROM order_lines l JOIN orders o ON o.order_id = l.order_id "
                                   f"WHERE o.correlation_id IN ({ids})")) == BULK
        assert database.stock("SKU-3") == stock_before - BULK
        again = admin(stack, "replay", "--reason", "MaxDeliveryCountExceeded", "--since", since, "--yes", "--why", "x")
        assert again.returncode == 0 and "0 Kept dead letter(s) match" in again.stdout
    finally:
        database.close()
