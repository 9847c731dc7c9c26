"""RFC 9457 problem details as Functions HTTP responses."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

PROBLEM_TYPE_BASE = "urn:orders:problem:"  # identifiers, not links to follow


def problem(status: int, title: str, detail: str, *, kind: str, headers: dict[str, str] | None = None,
            **extensions: Any) -> func.HttpResponse:
    body = {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status, "detail": detail, **extensions}
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers,
                             mimetype="application/problem+json")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=status, headers=headers, mimetype="application/json")
