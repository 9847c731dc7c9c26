"""The dead-letter routes of the orders API, with the operator's token, and errors that say what to do."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

RETRIES_WHEN_UNAVAILABLE = 5  # answers 503 (a dependency is down): waits Retry-After each time
RETRIES_WHEN_UNREACHABLE = 3  # no answer at all: a wrong URL is more likely than a blip


class ApiError(Exception):
    """The API refused or could not answer; ``str()`` says what happened and what to do next."""

    def __init__(self, message: str, status: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class DeadLetterApi:
    """``GET``/``POST`` on ``{api_url}/dead-letters…``; ``token`` is called for each request (it may refresh)."""

    def __init__(self, api_url: str, token: Callable[[], str], *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout, transport=transport)
        self._token = token
        self._sleep = sleep

    def close(self) -> None:
        self._client.close()

    def list(self, filters: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Every dead letter matching ``filters``, page after page."""
        after = 0
        while True:
            page = self._call("GET", "/dead-letters", params={**filters, "after": str(after), "limit": "500"})
            yield from page["deadLetters"]
            if page["nextAfter"] is None:
                return
            after = page["nextAfter"]

    def show(self, dead_letter_id: int) -> dict[str, Any]:
        return self._call("GET", f"/dead-letters/{dead_letter_id}")

    def replay(self, dead_letter_id: int, why: str) -> dict[str, Any]:
        return self._call("POST", f"/dead-letters/{dead_letter_id}/replay", json={"why": why})

    def repair(self, dead_letter_id: int, why: str, order: object) -> dict[str, Any]:
        return self._call("POST", f"/dead-letters/{dead_letter_id}/repair", json={"why": why, "order": order})

    def discard(self, dead_letter_id: int, why: str) -> dict[str, Any]:
        return self._call("POST", f"/dead-letters/{dead_letter_id}/discard", json={"why": why})

    def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        for attempt in range(RETRIES_WHEN_UNAVAILABLE + 1):
            try:
                response = self._client.request(method, path, headers={"Authorization": f"Bearer {self._token()}"},
                                                **options)
            except httpx.TransportError as error:
                if attempt >= RETRIES_WHEN_UNREACHABLE:
                    raise ApiError(f"the API at {self._client.base_url} does not answer ({error}); check the URL "
                                   "(--api or ORDERS_API_URL) and that the system is running") from None
                self._sleep(0.5 * 2.0 ** attempt)
                continue
            if response.status_code == 503 and attempt < RETRIES_WHEN_UNAVAILABLE:
                # Replay and discard are safe to send again: the same request never starts a second attempt.
                self._sleep(float(response.headers.get("Retry-After", "5")))
                continue
            if response.is_success:
                return response.json()
            raise _api_error(response)
        raise AssertionError("unreachable")


def _api_error(response: httpx.Response) -> ApiError:
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    detail = problem.get("detail") or response.text[:300] or response.reason_phrase
    errors = "; ".join(f"{e.get('field')}: {e.get('detail')}" for e in problem.get("errors", []))
    kind = str(problem.get("type", "")).rsplit(":", 1)[-1] or None
    hint = {
        401: "sign in again (a new token) and run the same command",
        403: "the token needs the app role Orders.Admin: ask the API's owners to assign it to you",
        404: "list the dead letters to find the id",
        409: "",
        422: "correct the request and run it again",
        503: "the service is not answering; nothing was changed, run the same command again later",
    }.get(response.status_code, "quote the errorId to the service's owners" if problem.get("errorId") else "")
    message = f"{response.status_code} {problem.get('title', response.reason_phrase)}: {detail}"
    if errors:
        message += f" ({errors})"
    if problem.get("errorId"):
        message += f" [errorId {problem['errorId']}]"
    if hint:
        message += f"; {hint}"
    return ApiError(message, response.status_code, kind)
