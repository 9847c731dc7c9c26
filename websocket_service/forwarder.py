"""``HttpEventForwarder``: hands events to the instance that holds their subscribers.

The timeout is short on purpose: a dead instance must not hold up the events of everybody else. A failed
forward is dropped; that instance's clients reconnect elsewhere and read the current status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

from websocket_service.core import StatusEvent

log = logging.getLogger("websocket_service.forwarder")

INTERNAL_EVENTS_PATH = "/internal/events"


class HttpEventForwarder:
    def __init__(self, client: httpx.AsyncClient, secret: str) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {secret}"}

    @classmethod
    def create(cls, secret: str, timeout_seconds: float) -> HttpEventForwarder:
        timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 0.3), pool=timeout_seconds)
        return cls(httpx.AsyncClient(timeout=timeout), secret)

    async def forward(self, internal_url: str, events: Sequence[StatusEvent]) -> bool:
        body = {"events": [e.to_mapping() for e in events]}
        try:
            response = await self._client.post(internal_url + INTERNAL_EVENTS_PATH, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            log.warning("forward failed; events dropped", extra={
                "target": internal_url, "error": repr(exc), "correlationId": events[0].correlation_id,
                "events": len(events)})
            return False
        if response.status_code != 202:
            log.warning("forward refused; events dropped", extra={
                "target": internal_url, "httpStatus": response.status_code,
                "correlationId": events[0].correlation_id, "events": len(events)})
            return False
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
