"""How the order pipeline's errors read over HTTP (RFC 9457 problem details)."""

from __future__ import annotations

import logging

import azure.functions as func

from function_app.problems import problem
from orders.domain.errors import IdempotencyKeyReused, OrderNotFound, TransientError
from orders.validation import MAX_BODY_BYTES, InvalidCorrelationId, InvalidRequest, MalformedJson

log = logging.getLogger("function_app")

RETRY_AFTER_SECONDS = "5"


class BodyTooLarge(Exception):
    pass


class NotJson(Exception):
    pass


def json_body(req: func.HttpRequest) -> bytes:
    """The request body, once it is known to be JSON of an acceptable size."""
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise NotJson(content_type or "no Content-Type")
    body = req.get_body()
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(len(body))
    return body


def problem_for(error: Exception) -> func.HttpResponse:
    """The response for an expected error; anything else is re-raised (the host answers 500 and logs it)."""
    match error:
        case NotJson():
            return problem(415, "Unsupported Media Type", f"the body must be JSON (Content-Type: application/json), not {error}",
                           kind="unsupported-media-type")
        case BodyTooLarge():
            return problem(413, "Content Too Large", f"the body has {error} bytes; at most {MAX_BODY_BYTES} are accepted",
                           kind="content-too-large")
        case MalformedJson():
            return problem(400, "Malformed JSON", str(error), kind="malformed-json")
        case InvalidRequest():
            return problem(422, "Invalid order", "the order breaks the rules listed in errors; correct them and retry",
                           kind="validation-error", errors=error.errors)
        case InvalidCorrelationId():
            return problem(400, "Malformed correlationId", str(error), kind="malformed-correlation-id")
        case IdempotencyKeyReused():
            return problem(409, "Idempotency-Key reused", str(error), kind="idempotency-key-reused",
                           correlationId=error.correlation_id)
        case OrderNotFound():
            return problem(404, "Order not found", str(error), kind="order-not-found")
        case TransientError():
            log.warning("dependency unavailable: %s", error)
            return problem(503, "Service Unavailable", f"{error}; nothing was changed, retry later",
                           kind="unavailable", headers={"Retry-After": RETRY_AFTER_SECONDS})
    raise error
