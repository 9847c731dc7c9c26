"""How the order pipeline's errors read over HTTP (RFC 9457 problem details).

No 5xx body carries driver, broker or host detail: it carries an ``errorId`` that the log line (with the
correlationId when there is one) carries too, so an operator can find the cause from what a client reports.
"""

from __future__ import annotations

import logging
import uuid

import azure.functions as func

from function_app.problems import problem
from function_app.responses import status_url
from orders.domain.errors import (
    AcceptanceUnknown,
    ActionRefused,
    DeadLetterNotFound,
    Forbidden,
    IdempotencyKeyReused,
    OrderNotFound,
    OrderTooLarge,
    TooManyOrders,
    TransientError,
)
from orders.validation import MAX_BODY_BYTES, InvalidCorrelationId, InvalidRequest, MalformedJson
from service_platform.access_tokens import IssuerUnavailable, TokenRejected

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


def _bearer_challenge(error: TokenRejected) -> str:
    description = error.description.replace("\\", "").replace('"', "'")
    return f'Bearer error="{error.error}", error_description="{description}"'


def problem_for(error: Exception, correlation_id: str | None = None) -> func.HttpResponse:
    """The response for ``error``; an unexpected one is logged with an error id and answered 500."""
    match error:
        case TokenRejected():
            return problem(401, "Unauthorized", f"{error}; sign in again and send the new token",
                           kind="unauthorized", headers={"WWW-Authenticate": _bearer_challenge(error)})
        case Forbidden():
            return problem(403, "Forbidden", str(error), kind="forbidden",
                           headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
        case NotJson():
            return problem(415, "Unsupported Media Type", f"the body must be JSON (Content-Type: application/json), not {error}",
                           kind="unsupported-media-type")
        case BodyTooLarge():
            return problem(413, "Content Too Large", f"the body has {error} bytes; at most {MAX_BODY_BYTES} are accepted",
                           kind="content-too-large")
        case MalformedJson():
            return problem(400, "Malformed JSON", str(error), kind="malformed-json")
        case InvalidRequest() | OrderTooLarge():
            return problem(422, "Invalid request", "the request breaks the rules listed in errors; correct them and "
                           "retry", kind="validation-error", errors=error.errors)
        case InvalidCorrelationId():
            return problem(400, "Malformed correlationId", str(error), kind="malformed-correlation-id")
        case IdempotencyKeyReused():
            return problem(409, "Idempotency-Key reused", str(error), kind="idempotency-key-reused",
                           correlationId=error.correlation_id)
        case OrderNotFound():
            return problem(404, "Order not found", str(error), kind="order-not-found")
        case DeadLetterNotFound():
            return problem(404, "Dead letter not found", str(error), kind="dead-letter-not-found")
        case ActionRefused():
            return problem(409, "Action refused", str(error), kind="action-refused")
        case TooManyOrders():
            return problem(429, "Too Many Requests", str(error), kind="too-many-orders",
                           headers={"Retry-After": str(error.retry_after_seconds)})
        case AcceptanceUnknown():
            error_id = _log_with_id(error, error.correlation_id, logging.WARNING, "acknowledgement unknown")
            return problem(503, "Acceptance unknown", "the broker did not confirm in time whether it holds this "
                           "order; send the same request again with the Idempotency-Key given here: it is the "
                           "same order, never a second one (or read statusUrl first)", kind="acceptance-unknown",
                           headers={"Retry-After": "1"}, errorId=error_id, correlationId=error.correlation_id,
                           idempotencyKey=error.idempotency_key,
                           statusUrl=status_url(str(error.correlation_id)))
        case TransientError() | IssuerUnavailable():
            error_id = _log_with_id(error, correlation_id, logging.WARNING, "dependency unavailable")
            return problem(503, "Service Unavailable", "a service this API depends on is not answering; nothing "
                           "was changed, retry later", kind="unavailable",
                           headers={"Retry-After": RETRY_AFTER_SECONDS}, errorId=error_id)
    error_id = _log_with_id(error, correlation_id, logging.ERROR, "unexpected error")
    return problem(500, "Internal Server Error", "the request failed unexpectedly; nothing may be assumed "
                   "about it, retry later and quote the errorId if it persists", kind="internal-error",
                   errorId=error_id)


def _log_with_id(error: Exception, correlation_id: str | None, level: int, what: str) -> str:
    error_id = str(uuid.uuid4())
    log.log(level, "%s (errorId %s): %s: %s", what, error_id, type(error).__name__, error,
            exc_info=level >= logging.ERROR,
            extra={"errorId": error_id, "correlationId": correlation_id, "error": type(error).__name__})
    return error_id
