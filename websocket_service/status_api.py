"""``StatusApiClient``: reads an order's current status from the status API (SQL is the source of truth)."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from websocket_service.core import InvalidEvent, StatusEvent
from websocket_service.ports import StatusUnavailable


class StatusApiClient:
    """``GET {base}/orders/{correlationId}`` → ``StatusEvent`` (200) or None (404)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @classmethod
    def create(cls, base_url: str, timeout_seconds: float) -> StatusApiClient:
        return cls(httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=timeout_seconds))

    async def current(self, correlation_id: str) -> StatusEvent | None:
        try:
            response = await self._client.get(f"orders/{quote(correlation_id, safe='')}")
        except httpx.HTTPError as exc:
            raise StatusUnavailable(f"status API unreachable: {exc!r}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise StatusUnavailable(f"status API answered {response.status_code}")
        try:
            return StatusEvent.from_mapping(response.json(), at_key="updatedAt")
        except (ValueError, InvalidEvent) as exc:
            raise StatusUnavailable(f"status API answered an unexpected body: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()
