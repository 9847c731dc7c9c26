"""Errors of the order pipeline, sorted by what the caller should do about them."""

from __future__ import annotations


class TransientError(Exception):
    """A dependency (SQL, the broker) is unavailable right now; the same work may succeed later.

    Triggers let it propagate so the message is abandoned and redelivered (the work is idempotent); the
    intake maps it to ``503`` with ``Retry-After``.
    """


class AcceptanceUnknown(TransientError):
    """The broker may or may not hold the order (no acknowledgement in time, or the link broke mid-send).

    Only a retry that makes the same message id is safe: the intake answers with the correlationId and the
    Idempotency-Key to retry with (``correlation_id``, ``idempotency_key``, set by the handler).
    """

    def __init__(self, detail: str, correlation_id: str | None = None, idempotency_key: str | None = None) -> None:
        super().__init__(detail)
        self.correlation_id = correlation_id
        self.idempotency_key = idempotency_key


class PoisonMessage(Exception):
    """A queue message can never be processed (unparseable, wrong schema); retrying cannot help.

    ``reason`` says what is wrong; it is what the dead-letter record and the ``Failed`` status carry.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DuplicateOrder(Exception):
    """An order for this correlationId was stored concurrently; re-read it instead of storing another."""

    def __init__(self, correlation_id: str) -> None:
        super().__init__(f"an order for correlationId {correlation_id} already exists")
        self.correlation_id = correlation_id


class OrderNotFound(Exception):
    """No order and no accepted record exists for this correlationId."""

    def __init__(self, correlation_id: str) -> None:
        super().__init__(f"no order was accepted with correlationId {correlation_id}")
        self.correlation_id = correlation_id


class IdempotencyKeyReused(Exception):
    """The customer used this ``Idempotency-Key`` for a different order; nothing was accepted (``409``)."""

    def __init__(self, correlation_id: str) -> None:
        super().__init__(
            "this Idempotency-Key was already used by this customer for a different order "
            f"(correlationId {correlation_id}); send that order's body again, or use a new key for a new order")
        self.correlation_id = correlation_id


class Forbidden(Exception):
    """The caller is signed in but may not do this (``403``); ``str()`` says what would allow it."""


class OrderTooLarge(Exception):
    """The order breaks a size limit (lines or units per order) (``422``); ``errors`` names each limit."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(error["detail"] for error in errors))
        self.errors = errors


class TooManyOrders(Exception):
    """The customer is over a submission limit (``429``); retry after ``retry_after_seconds``."""

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class DeadLetterNotFound(Exception):
    """No dead letter is kept under this id (``404``)."""

    def __init__(self, dead_letter_id: int) -> None:
        super().__init__(f"no dead letter is kept with id {dead_letter_id}: list them to find the id")
        self.dead_letter_id = dead_letter_id


class ActionRefused(Exception):
    """The dead letter cannot be replayed, repaired or discarded as asked (``409``); ``str()`` says why and
    what to do instead."""
