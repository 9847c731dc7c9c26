"""Orders end to end over real processes: HTTP intake → broker → processing → SQL → status API."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import httpx
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from local_stack.stack import LocalStack
from local_servers.orders_api import OrdersDatabase, order_body, wait_for_final_status

pytestmark = pytest.mark.e2e


def catalog(api: httpx.Client) -> dict[str, dict[str, object]]:
    response = api.get("/products")
    assert response.status_code == 200
    return {product["sku"]: product for product in response.json()}


def test_an_order_is_accepted_at_once_and_completes_with_the_catalog_total(api: httpx.Client) -> None:
    prices = {sku: Decimal(product["unitPrice"]) for sku, product in catalog(api).items()}

    response = api.post("/orders", json=order_body("c-total", ("SKU-2", 2), ("SKU-3", 5)))

    assert response.status_code == 202
    accepted = response.json()
    correlation_id = accepted["correlationId"]
    assert uuid.UUID(correlation_id)
    assert accepted["status"] == "Accepted"
    assert response.headers["location"] == accepted["statusUrl"]
    assert accepted["statusUrl"].startswith(f"/api/orders/{correlation_id}?receipt=")
    assert f"correlationId={correlation_id}" in accepted["notifyUrl"] and accepted["notifyToken"]
    final = wait_for_final_status(api, correlation_id)
    assert final["status"] == "Completed"
    assert isinstance(final["orderId"], int)
    assert Decimal(final["total"]) == 2 * prices["SKU-2"] + 5 * prices["SKU-3"]
    assert final["currency"] == "EUR" and final["reason"] is None


def test_unknown_skus_and_empty_stock_are_rejected_naming_the_sku(api: httpx.Client, database: OrdersDatabase) -> None:
    sold_out = next(sku for sku, product in catalog(api).items() if product["stock"] == 0)
    stock_before = database.stock("SKU-1")

    unknown = api.post("/orders", json=order_body("c-reject", ("SKU-1", 1), ("NO-SUCH-SKU", 1))).json()
    empty = api.post("/orders", json=order_body("c-reject", ("SKU-1", 1), (sold_out, 1))).json()

    unknown_final = wait_for_final_status(api, unknown["correlationId"])
    empty_final = wait_for_final_status(api, empty["correlationId"])
    assert unknown_final["status"] == "Rejected" and "NO-SUCH-SKU" in unknown_final["reason"]
    assert empty_final["status"] == "Rejected" and sold_out in empty_final["reason"]
    assert unknown_final["orderId"] is None and empty_final["orderId"] is None
    assert database.stock("SKU-1") == stock_before, "a rejected order must not keep any reserved stock"


@pytest.mark.parametrize(
    ("content", "headers", "status", "expected"),
    [
        (b'{"customerId": "c-1", ', {"content-type": "application/json"}, 400, "not valid JSON"),
        (b"customerId=c-1", {"content-type": "application/x-www-form-urlencoded"}, 415, "must be JSON"),
        (b'{"a": "' + b"x" * 70_000 + b'"}', {"content-type": "application/json"}, 413, "at most 65536"),
    ],
    ids=["malformed-json", "not-json", "too-large"],
)
def test_unusable_bodies_get_a_problem_saying_what_is_wrong(api, content, headers, status, expected) -> None:
    response = api.post("/orders", content=content, headers=headers)

    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and expected in problem["detail"]


def test_an_invalid_order_gets_422_naming_each_bad_field(api: httpx.Client) -> None:
    body = {"customerId": "bad id!", "currency": "EUX", "items": [{"sku": "SKU-1", "quantity": 0},
                                                                 {"sku": "", "quantity": 2}], "price": 1}

    response = api.post("/orders", json=body)

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert {"customerId", "currency", "items[0].quantity", "items[1].sku", "price"} <= fields


def test_a_bad_idempotency_key_gets_422(api: httpx.Client) -> None:
    response = api.post("/orders", json=order_body(), headers={"Idempotency-Key": "has space"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


def test_status_of_a_malformed_id_is_400_and_of_an_unknown_id_404(api: httpx.Client) -> None:
    malformed = api.get("/orders/not-a-uuid")
    unknown = api.get(f"/orders/{uuid.uuid4()}")

    assert malformed.status_code == 400 and "not a correlationId" in malformed.json()["detail"]
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/problem+json")


def test_the_same_idempotency_key_gives_the_same_order_once(api: httpx.Client, database: OrdersDatabase) -> None:
    stock_before = database.stock("SKU-4")
    key = f"key-{uuid.uuid4()}"

    first = api.post("/orders", json=order_body("c-idem", ("SKU-4", 3)), headers={"Idempotency-Key": key})
    final = wait_for_final_status(api, first.json()["correlationId"])
    again = api.post("/orders", json=order_body("c-idem", ("SKU-4", 3)), headers={"Idempotency-Key": key})

    assert first.status_code == again.status_code == 202
    assert again.json()["correlationId"] == first.json()["correlationId"]
    assert wait_for_final_status(api, first.json()["correlationId"])["orderId"] == final["orderId"]
    assert database.orders_for(first.json()["correlationId"]) == 1
    assert database.stock("SKU-4") == stock_before - 3


def _order_message(correlation_id: str, customer: str, body: bytes | None = None) -> ServiceBusMessage:
    payload = body if body is not None else json.dumps({
        "schemaVersion": 1, "correlationId": correlation_id, "customerId": customer, "currency": "EUR",
        "items": [{"sku": "SKU-5", "quantity": 1}], "acceptedAt": "2026-01-01T00:00:00.000Z"}).encode()
    return ServiceBusMessage(payload, message_id=correlation_id, correlation_id=correlation_id, session_id=customer,
                             content_type="application/json")


def test_a_message_delivered_twice_makes_one_order(stack: LocalStack, api, database: OrdersDatabase) -> None:
    correlation_id = str(uuid.uuid4())
    stock_before = database.stock("SKU-5")

    with ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_sender("orders") as sender:
        sender.send_messages(_order_message(correlation_id, "c-twice"))
        sender.send_messages(_order_message(correlation_id, "c-twice"))

    assert wait_for_final_status(api, correlation_id)["status"] == "Completed"
    assert database.orders_for(correlation_id) == 1
    assert database.stock("SKU-5") == stock_before - 1


def test_a_poison_message_is_dead_lettered_and_its_order_marked_failed(stack: LocalStack, api) -> None:
    """The dead-letter handler consumes the dead-letter queue, so the proof that the message went through it
    is the broker's dead-letter reason carried into the order's ``Failed`` reason."""
    correlation_id = str(uuid.uuid4())

    with ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_sender("orders") as sender:
        sender.send_messages(_order_message(correlation_id, "c-poison", body=b"{not json"))
    final = wait_for_final_status(api, correlation_id, timeout=90)

    assert final["status"] == "Failed"
    assert "not valid JSON" in final["reason"]
    assert "MaxDeliveryCountExceeded" in final["reason"]
    assert final["orderId"] is None


def test_the_same_idempotency_key_with_another_body_is_409_and_changes_nothing(api: httpx.Client,
                                                                             database: OrdersDatabase) -> None:
    key = f"key-{uuid.uuid4()}"
    first = api.post("/orders", json=order_body("c-idem-2", ("SKU-4", 1)), headers={"Idempotency-Key": key})
    final = wait_for_final_status(api, first.json()["correlationId"])
    stock = database.stock("SKU-4")
    other = api.post("/orders", json=order_body("c-idem-2", ("SKU-4", 2)), headers={"Idempotency-Key": key})

    assert first.status_code == 202 and other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["correlationId"] == first.json()["correlationId"]
    assert "use a new key" in other.json()["detail"]
    assert wait_for_final_status(api, first.json()["correlationId"]) == final
    assert database.stock("SKU-4") == stock and database.orders_for(first.json()["correlationId"]) == 1
