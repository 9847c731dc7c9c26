"""Validation of the operators' dead-letter requests: list filters, and the bodies of replay, repair and
discard. The repaired order is checked with the same rules as ``POST /api/orders`` (``orders.validation``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from orders.domain.dead_letters import DeadLetterFilter, DeadLetterState, RepairedOrder
from orders.domain.model import OrderLine
from orders.validation import (
    CustomerId,
    Currency,
    InvalidRequest,
    MalformedJson,
    OrderItemBody,
    parse_correlation_id,
    problem_errors,
)

MAX_PAGE = 500

Why = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"\S")]


class ActionBody(BaseModel):
    """``POST /api/dead-letters/{id}/replay`` and ``/discard``: why the operator does it (kept in the audit)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    why: Why


class RepairedOrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    customer_id: CustomerId = Field(alias="customerId")
    currency: Currency
    items: Annotated[list[OrderItemBody], Field(min_length=1, max_length=100)]


class RepairBody(ActionBody):
    """``POST /api/dead-letters/{id}/repair``: the corrected order, and why."""

    order: RepairedOrderBody

    def repaired(self) -> RepairedOrder:
        return RepairedOrder(self.order.customer_id, self.order.currency,
                             tuple(OrderLine(item.sku, item.quantity) for item in self.order.items))


def _document(raw: bytes | str) -> object:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MalformedJson(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise MalformedJson("the body is not valid JSON: it is nested too deeply") from None


def parse_action_body(raw: bytes | str) -> ActionBody:
    try:
        return ActionBody.model_validate(_document(raw))
    except ValidationError as error:
        raise InvalidRequest(problem_errors(error)) from None


def parse_repair_body(raw: bytes | str) -> RepairBody:
    try:
        return RepairBody.model_validate(_document(raw))
    except ValidationError as error:
        raise InvalidRequest(problem_errors(error)) from None


def parse_dead_letter_id(value: str | None) -> int:
    if value is None or not value.isascii() or not value.isdigit() or not 0 < len(value) <= 18 or int(value) == 0:
        raise InvalidRequest([{"field": "id", "detail": "must be a dead letter's id, a whole number from 1 (see "
                                                        "GET /api/dead-letters)"}])
    return int(value)


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    customer_id: CustomerId | None = Field(default=None, alias="customerId")
    correlation_id: str | None = Field(default=None, alias="correlationId")
    state: DeadLetterState | None = None
    after: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 100


def parse_dead_letter_query(params: Mapping[str, str]) -> DeadLetterFilter:
    """``GET /api/dead-letters`` query: ``reason``, ``since``/``until`` (ISO 8601 with an offset),
    ``customerId``, ``correlationId``, ``state``, ``after`` (the last id of the previous page), ``limit``."""
    try:
        query = _Query.model_validate(dict(params))
    except ValidationError as error:
        raise InvalidRequest(problem_errors(error)) from None
    since: datetime | None = query.since
    return DeadLetterFilter(
        reason=query.reason, since=since, until=query.until, customer_id=query.customer_id,
        correlation_id=None if query.correlation_id is None else parse_correlation_id(query.correlation_id),
        state=query.state, after_id=query.after, limit=query.limit)
