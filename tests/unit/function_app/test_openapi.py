"""The committed OpenAPI document matches the function app's routes, and says what the code answers."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from function_app.app import app
from function_app.openapi import DOCUMENT

ROOT = Path(__file__).resolve().parents[3]
SPEC = json.loads(DOCUMENT.read_text())
HOST_ROUTE_PREFIX = json.loads((ROOT / "host.json").read_text()).get("extensions", {}).get("http", {}).get(
    "routePrefix", "api")


def routes_of_the_app() -> dict[tuple[str, str], str]:
    routes = {}
    for function in app.get_functions():
        trigger = function.get_trigger()
        if type(trigger).__name__ != "HttpTrigger":
            continue
        for method in trigger.methods:
            routes[(method.value.lower(), f"/{HOST_ROUTE_PREFIX}/{trigger.route}")] = function.get_function_name()
    return routes


def operations_of_the_document() -> dict[tuple[str, str], dict]:
    return {(method, path): operation for path, item in SPEC["paths"].items() for method, operation in item.items()}


def test_it_is_openapi_3_1_with_a_bearer_security_scheme() -> None:
    assert SPEC["openapi"].startswith("3.1.")
    assert SPEC["components"]["securitySchemes"]["bearerAuth"] == {**SPEC["components"]["securitySchemes"]["bearerAuth"],
                                                                  "type": "http", "scheme": "bearer"}
    assert SPEC["security"] == [{"bearerAuth": []}]


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    routes, operations = routes_of_the_app(), operations_of_the_document()
    assert set(routes) == set(operations)
    for key, function_name in routes.items():
        assert operations[key]["operationId"] == function_name


@pytest.mark.parametrize("key", sorted(operations_of_the_document()))
def test_signed_in_routes_document_401_403_500_and_503_as_problems(key) -> None:
    operation = operations_of_the_document()[key]
    if operation.get("security") == []:
        return
    for status in ("401", "403", "500", "503"):
        content = operation["responses"][status]["content"]
        assert list(content) == ["application/problem+json"], (key, status)
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]


def test_every_status_the_intake_maps_an_error_to_is_documented_for_submit_order() -> None:
    source = (ROOT / "function_app" / "http_errors.py").read_text()
    statuses = {str(node.args[0].value) for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "problem"
                and isinstance(node.args[0], ast.Constant)}
    documented = set(operations_of_the_document()[("post", "/api/orders")]["responses"])
    assert statuses - {"404"} <= documented, "404 belongs to the status read only"
    assert "404" in operations_of_the_document()[("get", "/api/orders/{correlationId}")]["responses"]


def test_the_documented_body_limits_are_the_validators() -> None:
    from orders.validation import MAX_BODY_BYTES, OrderBody

    schema = SPEC["components"]["schemas"]["OrderRequest"]
    validator = OrderBody.model_json_schema(by_alias=True)
    assert set(schema["properties"]) == set(validator["properties"])
    assert (schema["properties"]["items"]["minItems"], schema["properties"]["items"]["maxItems"]) == (
        validator["properties"]["items"]["minItems"], validator["properties"]["items"]["maxItems"])
    quantity = validator["$defs"]["OrderItemBody"]["properties"]["quantity"]
    assert schema["properties"]["items"]["items"]["properties"]["quantity"] == {
        "type": "integer", "minimum": quantity["minimum"], "maximum": quantity["maximum"]}
    assert str(MAX_BODY_BYTES // 1024) in operations_of_the_document()[("post", "/api/orders")]["responses"]["413"][
        "description"]
    assert re.fullmatch(schema["properties"]["customerId"]["pattern"].strip("^$"), "c-1.x_Y")


def test_the_documented_currencies_are_the_ones_accepted() -> None:
    from orders.currencies import ISO_4217_CODES

    assert set(SPEC["components"]["schemas"]["OrderRequest"]["properties"]["currency"]["enum"]) == set(ISO_4217_CODES)
