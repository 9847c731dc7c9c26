"""The public order body, the Idempotency-Key header, correlationIds and the queue message, as a client
or a producer of queue messages would see them rejected."""

import json

import pytest

from orders.domain.callers import Caller, Permission
from orders.domain.errors import Forbidden

from orders.domain import OrderLine, PoisonMessage
from orders.validation import (
    InvalidCorrelationId,
    InvalidRequest,
    MalformedJson,
    parse_correlation_id,
    parse_idempotency_key,
    parse_order_body,
    parse_order_message,
)

VALID = {"customerId": "c-1", "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 2}]}


def errors_of(document) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as caught:
        parse_order_body(json.dumps(document))
    return {error["field"]: error["detail"] for error in caught.value.errors}


def with_changes(**changes):
    return {**VALID, **changes}


def test_a_valid_body_becomes_a_submit_command_for_the_signed_in_customer():
    customer = Caller("c-1", frozenset({Permission.OWN_ORDERS}))
    command = parse_order_body(json.dumps(VALID).encode()).to_command(customer, "key-1", "00-trace-01")
    assert command.customer_id == "c-1"
    assert command.items == (OrderLine("SKU-1", 2),)
    assert (command.idempotency_key, command.traceparent) == ("key-1", "00-trace-01")
    body_without_customer = {k: v for k, v in VALID.items() if k != "customerId"}
    assert parse_order_body(json.dumps(body_without_customer)).to_command(customer).customer_id == "c-1"


def test_the_customer_comes_from_the_token_and_only_a_backend_may_name_another():
    body = parse_order_body(json.dumps(with_changes(customerId="c-2")))
    with pytest.raises(Forbidden, match="differs from the signed-in customer"):
        body.to_command(Caller("c-1", frozenset({Permission.OWN_ORDERS})))
    backend = Caller(None, frozenset({Permission.SUBMIT_ON_BEHALF}))
    assert body.to_command(backend).customer_id == "c-2"
    unnamed = parse_order_body(json.dumps({k: v for k, v in VALID.items() if k != "customerId"}))
    with pytest.raises(Forbidden, match="must name the customer"):
        unnamed.to_command(backend)
    with pytest.raises(Forbidden, match="may not place orders"):
        body.to_command(Caller(None, frozenset({Permission.READ_ANY_ORDER})))


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe", b"[" * 60_000])
def test_malformed_json_is_its_own_error(raw):
    with pytest.raises(MalformedJson, match="not valid JSON"):
        parse_order_body(raw)


@pytest.mark.parametrize("customer_id", ["c", "A.b_c-9", "x" * 64])
def test_customer_ids_that_fit_the_rule(customer_id):
    assert parse_order_body(json.dumps(with_changes(customerId=customer_id))).customer_id == customer_id


@pytest.mark.parametrize("customer_id", ["", "x" * 65, "c 1", "c/1", "é", 7])
def test_customer_ids_that_do_not(customer_id):
    assert "customerId" in errors_of(with_changes(customerId=customer_id))


@pytest.mark.parametrize("currency", ["EUR", "USD", "JPY", "CHF", "XCG"])
def test_real_iso_currencies_pass(currency):
    assert parse_order_body(json.dumps(with_changes(currency=currency))).currency == currency


@pytest.mark.parametrize("currency", ["ABC", "eur", "EURO", "QQQ", "HRK", "", 978])
def test_three_letters_are_not_enough_for_a_currency(currency):
    assert "currency" in errors_of(with_changes(currency=currency))


def test_item_count_bounds():
    assert errors_of(with_changes(items=[])) == {"items": "must contain at least 1 item"}
    hundred = [{"sku": f"S{i}", "quantity": 1} for i in range(100)]
    assert len(parse_order_body(json.dumps(with_changes(items=hundred))).items) == 100
    assert errors_of(with_changes(items=hundred + [{"sku": "S", "quantity": 1}])) == {
        "items": "must contain at most 100 items"}


@pytest.mark.parametrize(("quantity", "detail"), [
    (0, "must be at least 1"), (1001, "must be at most 1000"), (-3, "must be at least 1"),
    (2.5, "must be a whole number"), ("2", "must be a whole number"), (True, "must be a whole number"),
    (None, "must be a whole number"),
])
def test_quantity_errors_name_the_item(quantity, detail):
    """(2.0 is accepted as 2: JSON Schema, and so the OpenAPI document, counts it as an integer.)"""
    document = with_changes(items=[{"sku": "SKU-1", "quantity": 1}, {"sku": "SKU-2", "quantity": quantity}])
    assert errors_of(document) == {"items[1].quantity": detail}


def test_sku_length_bounds():
    assert parse_order_body(json.dumps(with_changes(items=[{"sku": "s" * 64, "quantity": 1}])))
    assert errors_of(with_changes(items=[{"sku": "", "quantity": 1}])) == {
        "items[0].sku": "must be at least 1 character(s) long"}
    assert errors_of(with_changes(items=[{"sku": "s" * 65, "quantity": 1}])) == {
        "items[0].sku": "must be at most 64 characters long"}


def test_unknown_fields_are_rejected_and_prices_never_come_from_the_client():
    errors = errors_of(with_changes(total="0.01", items=[{"sku": "SKU-1", "quantity": 1, "unitPrice": "0.01"}]))
    assert errors == {"total": "is not a known field", "items[0].unitPrice": "is not a known field"}


def test_every_problem_is_listed_with_a_json_pointer():
    with pytest.raises(InvalidRequest) as caught:
        parse_order_body(json.dumps({"items": [{"quantity": 5000}]}))
    assert caught.value.errors == [
        {"field": "currency", "pointer": "#/currency", "detail": "is required"},
        {"field": "items[0].sku", "pointer": "#/items/0/sku", "detail": "is required"},
        {"field": "items[0].quantity", "pointer": "#/items/0/quantity", "detail": "must be at most 1000"},
    ]


@pytest.mark.parametrize("document", [[], "order", 3, None])
def test_the_body_must_be_an_object(document):
    assert errors_of(document) == {"(body)": "must be a JSON object"}


@pytest.mark.parametrize("key", ["k", "A-Za-z0-9!~{}", "x" * 128, "\x21\x7e"])
def test_idempotency_keys_of_visible_ascii(key):
    assert parse_idempotency_key(key) == key
    assert parse_idempotency_key(None) is None


@pytest.mark.parametrize("key", ["", "x" * 129, "has space", "tab\t", "é", "\x7f"])
def test_idempotency_keys_rejected(key):
    with pytest.raises(InvalidRequest) as caught:
        parse_idempotency_key(key)
    assert caught.value.errors[0]["field"] == "Idempotency-Key"


def test_correlation_ids_are_canonical_uuids():
    assert parse_correlation_id("0D3C1D4E-6F10-4C1C-9A3B-5F2F7F0F9C11") == "0d3c1d4e-6f10-4c1c-9a3b-5f2f7f0f9c11"
    for bad in ["", "42", "{0d3c1d4e-6f10-4c1c-9a3b-5f2f7f0f9c11}", "0d3c1d4e6f104c1c9a3b5f2f7f0f9c11", None]:
        with pytest.raises(InvalidCorrelationId, match="expected a UUID"):
            parse_correlation_id(bad)


MESSAGE = {"schemaVersion": 1, "correlationId": "0d3c1d4e-6f10-4c1c-9a3b-5f2f7f0f9c11", "customerId": "c-1",
           "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 2}], "acceptedAt": "2026-01-02T03:04:05.678Z"}


def test_a_v1_message_becomes_a_process_command():
    command = parse_order_message(json.dumps({**MESSAGE, "addedLater": True}).encode())
    assert command.correlation_id == MESSAGE["correlationId"]
    assert command.items == (OrderLine("SKU-1", 2),)
    assert command.accepted_at.isoformat() == "2026-01-02T03:04:05.678000+00:00"


@pytest.mark.parametrize(("body", "reason"), [
    (b"\x00garbage", "not valid JSON"),
    (b'{"a":' * 40_000, "nested too deeply"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({**MESSAGE, "schemaVersion": 2}), "unsupported schemaVersion 2"),
    (json.dumps({k: v for k, v in MESSAGE.items() if k != "schemaVersion"}), "unsupported schemaVersion None"),
    (json.dumps({**MESSAGE, "correlationId": "nope"}), "correlationId"),
    (json.dumps({**MESSAGE, "items": [{"sku": "SKU-1", "quantity": 0}]}), "items[0].quantity must be at least 1"),
    (json.dumps({**MESSAGE, "acceptedAt": "2026-01-02T03:04:05"}), "acceptedAt"),
    (json.dumps({**MESSAGE, "currency": "XYZ"}), "currency"),
])
def test_poison_messages_say_what_is_wrong(body, reason):
    with pytest.raises(PoisonMessage) as caught:
        parse_order_message(body)
    assert reason in caught.value.reason


@pytest.mark.parametrize("receipt", ["0" * 65, "123.abc", "1767225600000." + "A" * 42, "1767225600000." + "\u00e9" * 43])
def test_a_malformed_receipt_is_refused(receipt):
    from orders.validation import InvalidCorrelationId, parse_receipt

    with pytest.raises(InvalidCorrelationId, match="receipt is malformed"):
        parse_receipt(receipt)
    assert parse_receipt(None) is None and parse_receipt("1767225600000." + "A" * 43)
