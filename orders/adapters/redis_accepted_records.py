"""Short-lived ``Accepted`` records in Redis, so a status read between intake and processing answers.

Best effort by design: Redis is not the source of truth (SQL is, once the order is processed). When Redis
does not answer, intake still accepts orders; a circuit breaker keeps a Redis outage from adding a timeout
to every request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime

from redis.asyncio import Redis

from orders.domain.errors import TransientError
from orders.domain.model import AcceptedRecord
from orders.json_contracts import iso_utc

log = logging.getLogger(__name__)

KEY_PREFIX = "orders:accepted:"
IDEMPOTENCY_PREFIX = "orders:idempotency:"


class RedisAcceptedRecordStore:
    """Implements ``AcceptedRecordStore``: a CorrelationId's ``Accepted`` record, kept for a TTL."""

    def __init__(self, redis: Redis, *, retry_after_failure_seconds: float = 5.0) -> None:
        self._redis = redis
        self._retry_after_failure = retry_after_failure_seconds
        self._skip_until = 0.0
        self._pending: list[tuple[str, str, int, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record_accepted(self, record: AcceptedRecord, ttl_seconds: int) -> None:
        """Store the record; when Redis does not answer, log it and carry on (the order is still accepted).

        Returns once Redis has stored it (or failed). Under load, records of concurrent calls go out together
        in one pipelined round trip: while one batch is on the wire, new records wait for the next one.
        """
        if time.monotonic() < self._skip_until:
            return
        payload = json.dumps({"correlationId": record.correlation_id, "customerId": record.customer_id,
                              "currency": record.currency, "acceptedAt": iso_utc(record.accepted_at)})
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((record.correlation_id, payload, ttl_seconds, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_while_pending())
        await stored

    async def _write_while_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._redis.pipeline(transaction=False) as pipeline:
                    for correlation_id, payload, ttl_seconds, _ in batch:
                        pipeline.set(KEY_PREFIX + correlation_id, payload, ex=ttl_seconds)
                    await pipeline.execute()
            except Exception as error:
                self._trip(error, batch[0][0])
            for *_, stored in batch:
                if not stored.done():
                    stored.set_result(None)

    async def get_accepted(self, correlation_id: str) -> AcceptedRecord | None:
        """The record, or None when there is none; ``TransientError`` when Redis does not answer (the order may
        well exist, so the caller must not claim it does not)."""
        if time.monotonic() < self._skip_until:
            raise TransientError("Redis, which holds not-yet-processed orders, is not answering")
        try:
            raw = await self._redis.get(KEY_PREFIX + correlation_id)
        except Exception as error:
            self._trip(error, correlation_id)
            raise TransientError(f"Redis, which holds not-yet-processed orders, did not answer: {error}") from error
        if raw is None:
            return None
        data = json.loads(raw)
        return AcceptedRecord(correlation_id=data["correlationId"], customer_id=data["customerId"],
                              currency=data["currency"],
                              accepted_at=datetime.fromisoformat(data["acceptedAt"].replace("Z", "+00:00")))

    async def claim_idempotency_key(self, correlation_id: str, fingerprint: str, ttl_seconds: int) -> str | None:
        """``SET NX`` of the fingerprint under the key's correlationId: the first request binds it."""
        if time.monotonic() < self._skip_until:
            raise TransientError("Redis, which remembers Idempotency-Keys, is not answering")
        key = IDEMPOTENCY_PREFIX + correlation_id
        try:
            if await self._redis.set(key, fingerprint, nx=True, ex=ttl_seconds):
                return None
            bound = await self._redis.get(key)
        except Exception as error:
            self._trip(error, correlation_id)
            raise TransientError(f"Redis, which remembers Idempotency-Keys, did not answer: {error}") from error
        if bound is None:  # expired between the two calls: bind again
            return await self.claim_idempotency_key(correlation_id, fingerprint, ttl_seconds)
        bound = bound.decode() if isinstance(bound, bytes) else bound
        return None if bound == fingerprint else bound

    async def ping(self) -> None:
        """Raise unless Redis answers (health checks go past the circuit breaker)."""
        await self._redis.ping()
        self._skip_until = 0.0

    def _trip(self, error: Exception, correlation_id: str) -> None:
        self._skip_until = time.monotonic() + self._retry_after_failure
        log.warning(
            "Redis did not answer; Accepted records are skipped for %.0fs", self._retry_after_failure,
            extra={"correlationId": correlation_id, "error": str(error)},
        )
