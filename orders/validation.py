"""Validation at the edges: the public order body, the ``Idempotency-Key`` header, correlationIds and the
``orders`` queue message (pydantic v2). Each parser returns a domain command or value, or raises an error
that says what is wrong in terms the caller can act on.

| function | raises | the trigger answers |
|---|---|---|
| ``parse_order_body`` | ``MalformedJson`` / ``InvalidRequest`` | 400 / 422 with ``errors`` |
| ``parse_idempotency_key`` | ``InvalidRequest`` | 422 |
| ``parse_correlation_id``, ``parse_receipt`` | ``InvalidCorrelationId`` | 400 |
| ``parse_order_message`` | ``PoisonMessage`` | let it go to the dead-letter queue |
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from orders.currencies import ISO_4217_CODES
from service_platform.correlation_ids import CORRELATION_ID_PATTERN, canonical_correlation_id, is_correlation_id
from orders.domain.callers import Caller, customer_for_submission
from orders.domain.commands import ProcessOrder, SubmitOrder
from orders.domain.errors import PoisonMessage
from orders.domain.model import MESSAGE_SCHEMA_VERSION, OrderLine

#: Largest accepted ``POST /api/orders`` body; larger ones get 413 before any parsing.
MAX_BODY_BYTES = 64 * 1024

_CUSTOMER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")


class MalformedJson(ValueError):
    """The body is not JSON at all (400)."""


class InvalidRequest(ValueError):
    """The request is JSON but breaks the contract (422); ``errors`` is the RFC 9457 ``errors`` list."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{error['field']}: {error['detail']}" for error in errors))
        self.errors = errors


class InvalidCorrelationId(ValueError):
    """Not a correlationId (a UUID like ``3f2b0c1e-8a4d-4e0f-9b7a-2d1c5e6f7a8b``) (400)."""


def _customer_id(value: str) -> str:
    if not _CUSTOMER_ID.fullmatch(value):
        raise PydanticCustomError(
            "customer_id", "must be 1 to 64 characters, each a letter, a digit, '.', '_' or '-'")
    return value


def _currency(value: str) -> str:
    if value not in ISO_4217_CODES:
        raise PydanticCustomError(
            "currency", "'{value}' is not an ISO 4217 currency code (three capital letters, e.g. EUR)",
            {"value": value[:16]})
    return value


CustomerId = Annotated[str, AfterValidator(_customer_id)]
Currency = Annotated[str, AfterValidator(_currency)]
Sku = Annotated[str, Field(min_length=1, max_length=64)]
def _whole_float_as_int(value: object) -> object:
    # JSON Schema (and so the OpenAPI document) counts 2.0 as an integer; 2.5, "2" and true stay refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Quantity = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_whole_float_as_int)]


class OrderItemBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    sku: Sku
    quantity: Quantity


class OrderBody(BaseModel):
    """The body of ``POST /api/orders``. Prices are not part of it: they come from the catalog.

    ``customerId`` is optional: a customer's own token says who the customer is; a trusted backend names
    the customer here.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)

    # Absent means "the signed-in customer"; an explicit null is refused like any non-string.
    customer_id: CustomerId = Field(default=None, alias="customerId")  # type: ignore[assignment]
    currency: Currency
    items: Annotated[list[OrderItemBody], Field(min_length=1, max_length=100)]

    def to_command(self, caller: Caller, idempotency_key: str | None = None,
                   traceparent: str | None = None) -> SubmitOrder:
        return SubmitOrder(
            customer_id=customer_for_submission(caller, self.customer_id),
            currency=self.currency,
            items=tuple(OrderLine(item.sku, item.quantity) for item in self.items),
            idempotency_key=idempotency_key,
            traceparent=traceparent,
        )


class OrderMessageBody(BaseModel):
    """The ``orders`` queue message, schema version 1 (docs/contracts.md).

    Unknown fields are ignored (a tolerant reader); everything the processor needs is checked with the
    same rules as the public body.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    schema_version: Literal[1] = Field(alias="schemaVersion")
    correlation_id: Annotated[str, Field(pattern=CORRELATION_ID_PATTERN)] = Field(alias="correlationId")
    customer_id: CustomerId = Field(alias="customerId")
    currency: Currency
    items: Annotated[list[OrderItemBody], Field(min_length=1, max_length=100)]
    # JSON carries timestamps as strings; strict mode would refuse them, so this field alone is lax.
    accepted_at: Annotated[AwareDatetime, Field(strict=False)] = Field(alias="acceptedAt")

    def to_command(self) -> ProcessOrder:
        return ProcessOrder(
            correlation_id=self.correlation_id.lower(),
            customer_id=self.customer_id,
            currency=self.currency,
            items=tuple(OrderLine(item.sku, item.quantity) for item in self.items),
            accepted_at=self.accepted_at,
        )


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('items', 0, 'quantity')`` → ``items[0].quantity``; the empty location is the body itself."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(body)"


def _detail(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return "must be a JSON object"
    if kind in {"int_type", "int_from_float", "int_parsing"}:
        return "must be a whole number"
    if kind in {"string_type"}:
        return "must be a string"
    if kind in {"list_type"}:
        return "must be a JSON array"
    if kind == "too_short" and error["loc"][-1:] == ("items",):
        return "must contain at least 1 item"
    if kind == "too_long" and error["loc"][-1:] == ("items",):
        return "must contain at most 100 items"
    if kind == "string_too_short":
        return f"must be at least {error['ctx']['min_length']} character(s) long"
    if kind == "string_too_long":
        return f"must be at most {error['ctx']['max_length']} characters long"
    if kind == "greater_than_equal":
        return f"must be at least {error['ctx']['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {error['ctx']['le']}"
    message: str = error["msg"]
    return message[0].lower() + message[1:] if message else kind


def problem_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as an RFC 9457 ``errors`` list: ``{"field": "items[0].quantity", "pointer":
    "#/items/0/quantity", "detail": "must be at most 1000"}``, field names as the client spelled them."""
    return [
        {
            "field": field_path(tuple(item["loc"])),
            "pointer": "#" + "".join(f"/{part}" for part in item["loc"]),
            "detail": _detail(item),
        }
        for item in error.errors(include_url=False)
    ]


def parse_order_body(raw: bytes | str) -> OrderBody:
    """Parse and validate a ``POST /api/orders`` body."""
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MalformedJson(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise MalformedJson("the body is not valid JSON: it is nested too deeply") from None
    try:
        return OrderBody.model_validate(document)
    except ValidationError as error:
        raise InvalidRequest(problem_errors(error)) from None


def parse_idempotency_key(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header: absent is fine; present, it is 1 to 128 visible ASCII characters."""
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidRequest([{
            "field": "Idempotency-Key",
            "detail": "must be 1 to 128 visible ASCII characters (no spaces or control characters)",
        }])
    return value


_RECEIPT = re.compile(r"[0-9]{13}\.[A-Za-z0-9_-]{43}", re.ASCII)


def parse_receipt(value: str | None) -> str | None:
    """The ``receipt`` of a statusUrl: absent is fine; present, it must be one the intake could have issued."""
    if value is None:
        return None
    if not _RECEIPT.fullmatch(value):
        raise InvalidCorrelationId("the receipt is malformed: use the statusUrl exactly as the 202 answer gave it")
    return value


def parse_correlation_id(value: str | None) -> str:
    """A correlationId in canonical (lower-case, hyphenated) form."""
    if not is_correlation_id(value):
        raise InvalidCorrelationId(
            f"{value!r:.60} is not a correlationId: expected a UUID like 3f2b0c1e-8a4d-4e0f-9b7a-2d1c5e6f7a8b")
    return canonical_correlation_id(value)


def parse_order_message(body: bytes | str) -> ProcessOrder:
    """Read an ``orders`` queue message body; ``PoisonMessage`` (with a reason naming what is wrong) when it can
    never be processed, so it should go to the dead-letter queue rather than be retried."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PoisonMessage(f"message body is not valid JSON: {error}") from None
    except RecursionError:
        raise PoisonMessage("message body is not valid JSON: it is nested too deeply") from None
    if not isinstance(document, dict):
        raise PoisonMessage("message body must be a JSON object")
    version = document.get("schemaVersion")
    if version != MESSAGE_SCHEMA_VERSION:
        raise PoisonMessage(
            f"unsupported schemaVersion {version!r}: this processor reads version {MESSAGE_SCHEMA_VERSION}")
    try:
        return OrderMessageBody.model_validate(document).to_command()
    except ValidationError as error:
        details = "; ".join(f"{item['field']} {item['detail']}" for item in problem_errors(error))
        raise PoisonMessage(f"message body does not match schema version 1: {details}") from None
