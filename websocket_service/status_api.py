"""``StatusApiClient``: reads an order's current status from the status API (SQL is the source of truth)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx

from websocket_service.core import InvalidEvent, StatusEvent
from websocket_service.ports import StatusUnavailable


class StatusApiClient:
    """``GET {base}/orders/{correlationId}`` → ``StatusEvent`` (200) or None (404).

    At most ``concurrency`` requests are in flight; the rest wait here. httpcore's pool rescans its whole
    queue for every request it assigns, so thousands of sockets subscribing at once (an instance restart)
    would otherwise cost quadratic time there.
    """

    def __init__(self, client: httpx.AsyncClient, concurrency: int = 32) -> None:
        self._client = client
        self._slots = asyncio.Semaphore(concurrency)

    @classmethod
    def create(cls, base_url: str, timeout_seconds: float, concurrency: int = 32,
               auth: httpx.Auth | None = None) -> StatusApiClient:
        """``auth`` signs the requests in: the API answers only callers allowed to read any order."""
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return cls(httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=timeout_seconds, limits=limits,
                                     auth=auth), concurrency)

    async def current(self, correlation_id: str) -> StatusEvent | None:
        try:
            async with self._slots:
                response = await self._client.get(f"orders/{quote(correlation_id, safe='')}")
        except httpx.HTTPError as exc:
            raise StatusUnavailable(f"status API unreachable: {exc!r}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise StatusUnavailable(f"status API answered {response.status_code}")
        try:
            return StatusEvent.from_mapping(response.json())
        except (ValueError, InvalidEvent) as exc:
            raise StatusUnavailable(f"status API answered an unexpected body: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()
