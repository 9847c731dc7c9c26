"""The intake's ``202`` answer: where to read the order's status and where to follow it live."""

from __future__ import annotations

from urllib.parse import urlencode

import azure.functions as func

from function_app.problems import json_response
from orders.domain.model import OrderStatus
from orders.service_layer.handlers import Accepted


def status_url(correlation_id: str, receipt: str = "") -> str:
    """The order's status URL; with the receipt, its read never says "not found" before processing."""
    return f"/api/orders/{correlation_id}" + (f"?{urlencode({'receipt': receipt})}" if receipt else "")


def notify_url(notify_public_url: str, accepted: Accepted) -> str:
    return f"{notify_public_url}?{urlencode({'correlationId': accepted.correlation_id, 'token': accepted.notify_token})}"


def accepted_json(accepted: Accepted, notify_public_url: str) -> dict[str, str]:
    return {
        "correlationId": accepted.correlation_id,
        "status": OrderStatus.ACCEPTED.value,
        "statusUrl": status_url(accepted.correlation_id, accepted.receipt),
        "notifyUrl": notify_url(notify_public_url, accepted),
        "notifyToken": accepted.notify_token,
    }


def accepted_response(accepted: Accepted, notify_public_url: str) -> func.HttpResponse:
    return json_response(accepted_json(accepted, notify_public_url), 202,
                         {"Location": status_url(accepted.correlation_id, accepted.receipt)})
