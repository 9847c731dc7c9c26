"""Errors as problem details: what each says, and that no 5xx body carries internals."""

from __future__ import annotations

import json
import logging

from function_app.http_errors import problem_for
from orders.domain.errors import AcceptanceUnknown, TooManyOrders, TransientError
from service_platform.access_tokens import TokenRejected


def body_of(response) -> dict:
    return json.loads(response.get_body())


def test_an_unexpected_error_is_a_500_with_an_error_id_the_log_carries_and_no_exception_text(caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="function_app"):
        response = problem_for(KeyError("postgres://admin:pw@db-7.internal:5432"), "cid-1")
    body = body_of(response)
    assert response.status_code == 500 and body["errorId"]
    assert "db-7" not in response.get_body().decode() and "KeyError" not in response.get_body().decode()
    [record] = caplog.records
    assert record.errorId == body["errorId"] and record.correlationId == "cid-1" and record.exc_info


def test_a_dependency_outage_is_a_503_without_the_drivers_text(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="function_app"):
        response = problem_for(TransientError("Redis at redis-prod-3.redis.cache.windows.net:6380 refused"))
    body = body_of(response)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "redis-prod-3" not in response.get_body().decode() and "retry later" in body["detail"]
    assert caplog.records[0].errorId == body["errorId"] and "redis-prod-3" in caplog.records[0].getMessage()


def test_401_carries_a_bearer_challenge_that_cannot_be_broken_by_the_description() -> None:
    response = problem_for(TokenRejected('bad "quoted" \\ text'))
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert challenge.count('"') == 4


def test_429_says_when_to_retry() -> None:
    response = problem_for(TooManyOrders("slow down", retry_after_seconds=17))
    assert response.status_code == 429 and response.headers["Retry-After"] == "17"
    assert body_of(response)["type"] == "urn:orders:problem:too-many-orders"


def test_an_unknown_acceptance_says_how_to_retry_safely() -> None:
    response = problem_for(AcceptanceUnknown("no acknowledgement", "3f2b0c1e-8a4d-4e0f-9b7a-2d1c5e6f7a8b", "k-9"))
    body = body_of(response)
    assert response.status_code == 503 and body["type"] == "urn:orders:problem:acceptance-unknown"
    assert body["idempotencyKey"] == "k-9" and body["correlationId"] == "3f2b0c1e-8a4d-4e0f-9b7a-2d1c5e6f7a8b"
    assert body["statusUrl"] == "/api/orders/3f2b0c1e-8a4d-4e0f-9b7a-2d1c5e6f7a8b"
    assert "Idempotency-Key" in body["detail"] and "no acknowledgement" not in body["detail"]
