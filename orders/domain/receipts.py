"""Receipts: the intake's signed proof that it accepted an order, carried in the ``statusUrl`` it answers.

Between the ``202`` and the order's row in SQL the only other trace of an order is the short-lived Accepted
record in Redis, which may be missing (Redis down, a write skipped, a key evicted). Redis is never a source of
truth, so the proof travels with the client instead: ``<acceptedAt ms>.<HMAC-SHA256 over correlationId,
customer and acceptedAt>``. A status read that finds neither a row nor a record answers ``Accepted`` on a
valid receipt for the caller's own order, never "not found". Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime

_RECEIPT = re.compile(r"([0-9]{13})\.([A-Za-z0-9_-]{43})", re.ASCII)


def _signature(secret: bytes, correlation_id: str, customer_id: str, accepted_ms: int) -> str:
    message = f"receipt\n{correlation_id}\n{customer_id}\n{accepted_ms}".encode()
    return base64.urlsafe_b64encode(hmac.new(secret, message, hashlib.sha256).digest()).rstrip(b"=").decode()


def issue_receipt(secret: bytes, correlation_id: str, customer_id: str, accepted_at: datetime) -> str:
    accepted_ms = int(accepted_at.timestamp() * 1000)
    return f"{accepted_ms}.{_signature(secret, correlation_id, customer_id, accepted_ms)}"


def accepted_at_of(secret: bytes, receipt: str | None, correlation_id: str, customer_id: str | None) -> datetime | None:
    """When the order was accepted, if ``receipt`` proves it for this customer; None otherwise."""
    if not receipt or customer_id is None or not (match := _RECEIPT.fullmatch(receipt)):
        return None
    accepted_ms = int(match.group(1))
    if not hmac.compare_digest(match.group(2), _signature(secret, correlation_id, customer_id, accepted_ms)):
        return None
    return datetime.fromtimestamp(accepted_ms / 1000, UTC)
