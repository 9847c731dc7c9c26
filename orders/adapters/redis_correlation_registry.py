"""Short-lived ``Accepted`` records in Redis, so a status read between intake and processing answers.

Best effort by design: Redis is not the source of truth (SQL is, once the order is processed). When Redis
does not answer, intake still accepts orders; a circuit breaker keeps a Redis outage from adding a timeout
to every request.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from redis.asyncio import Redis

log = logging.getLogger(__name__)

KEY_PREFIX = "orders:accepted:"


class RedisCorrelationRegistry:
    """Maps a CorrelationId to its ``Accepted`` record for ``ttl_seconds``."""

    def __init__(self, redis: Redis, *, ttl_seconds: int, retry_after_failure_seconds: float = 5.0) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._retry_after_failure = retry_after_failure_seconds
        self._skip_until = 0.0

    async def record_accepted(self, correlation_id: str, record: dict[str, Any]) -> bool:
        """Store the record; return False (after logging) when Redis could not take it."""
        if time.monotonic() < self._skip_until:
            return False
        try:
            await self._redis.set(KEY_PREFIX + correlation_id, json.dumps(record), ex=self._ttl)
        except Exception as error:
            self._trip(error, correlation_id)
            return False
        return True

    async def find_accepted(self, correlation_id: str) -> dict[str, Any] | None:
        """The record, or None when there is none or Redis does not answer."""
        if time.monotonic() < self._skip_until:
            return None
        try:
            raw = await self._redis.get(KEY_PREFIX + correlation_id)
        except Exception as error:
            self._trip(error, correlation_id)
            return None
        return None if raw is None else json.loads(raw)

    async def ping(self) -> None:
        """Raise unless Redis answers (health checks bypass the circuit breaker)."""
        await self._redis.ping()
        self._skip_until = 0.0

    def _trip(self, error: Exception, correlation_id: str) -> None:
        self._skip_until = time.monotonic() + self._retry_after_failure
        log.warning(
            "Redis did not answer; Accepted records are skipped for %.0fs", self._retry_after_failure,
            extra={"correlationId": correlation_id, "error": str(error)},
        )
