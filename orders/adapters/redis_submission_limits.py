"""Per-customer submission limits in Redis, shared by every intake replica; only short-lived state.

- **In flight**: a sorted set per customer of the correlationIds accepted and not yet terminal (score: when
  accepted). The processor removes an order once it has its outcome; an entry older than the in-flight
  window no longer counts, so a lost removal heals by itself.
- **Rate**: a counter per customer and minute, expiring with the minute.

Each admission counts first and looks at the counts in the same pipelined round trip (no script: the
embedded Redis of the local run has no Lua); a refusal takes its count back in a second one. Concurrent
requests of one customer at a limit can therefore refuse each other for a moment: this is an abuse limit,
not an accounting one. When Redis does not answer, the caller admits (fail open).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from orders.domain.errors import TooManyOrders

IN_FLIGHT_PREFIX = "orders:inflight:"
RATE_PREFIX = "orders:rate:"


class RedisSubmissionLimiter:
    """Implements ``SubmissionLimiter``. ``redis`` is an asyncio client (intake), ``blocking_redis`` a
    synchronous one (the processing path, which runs in a worker thread)."""

    def __init__(self, redis: Any, blocking_redis: Any, *, max_in_flight: int, max_per_minute: int,
                 in_flight_window_seconds: int) -> None:
        self._redis = redis
        self._blocking_redis = blocking_redis
        self.max_in_flight = max_in_flight
        self.max_per_minute = max_per_minute
        self.window_seconds = in_flight_window_seconds
        self._pending: list[tuple[str, str, str, float, asyncio.Future[list[Any]]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def admit(self, customer_id: str, correlation_id: str) -> TooManyOrders | None:
        """One round trip on the common path: count first, then look; a refusal takes the count back.

        Under load, the counts of concurrent admissions go out together in one pipeline: while one batch is
        on the wire, new ones wait for the next.
        """
        now = time.time()
        in_flight_key, rate_key = IN_FLIGHT_PREFIX + customer_id, f"{RATE_PREFIX}{customer_id}:{int(now // 60)}"
        counted: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((in_flight_key, rate_key, correlation_id, now, counted))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._count_while_pending())
        _, added, in_flight, _, submitted, _ = await counted
        if not added:  # a retry of an order already counted: admitted, and not counted twice
            await self._redis.decr(rate_key)
            return None
        refusal = None
        if submitted > self.max_per_minute:
            refusal = TooManyOrders(f"more than {self.max_per_minute} orders a minute for this customer; slow down",
                                    retry_after_seconds=max(1, 60 - int(now % 60)))
        elif in_flight > self.max_in_flight:
            refusal = TooManyOrders(f"{in_flight - 1} orders of this customer are still being processed (at most "
                                    f"{self.max_in_flight}); retry once some have finished", retry_after_seconds=5)
        if refusal is not None:
            async with self._redis.pipeline(transaction=False) as pipeline:
                pipeline.zrem(in_flight_key, correlation_id)
                pipeline.decr(rate_key)
                await pipeline.execute()
        return refusal

    async def _count_while_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._redis.pipeline(transaction=False) as pipeline:
                    for in_flight_key, rate_key, correlation_id, now, _ in batch:
                        pipeline.zremrangebyscore(in_flight_key, "-inf", now - self.window_seconds)
                        pipeline.zadd(in_flight_key, {correlation_id: now}, nx=True)
                        pipeline.zcard(in_flight_key)
                        pipeline.expire(in_flight_key, self.window_seconds)
                        pipeline.incr(rate_key)
                        pipeline.expire(rate_key, 120)
                    results = await pipeline.execute()
            except Exception as error:  # noqa: BLE001 - each caller decides (the handler fails open)
                for *_, counted in batch:
                    if not counted.done():
                        counted.set_exception(error)
                continue
            for index, (*_, counted) in enumerate(batch):
                if not counted.done():
                    counted.set_result(results[6 * index:6 * index + 6])

    def release(self, customer_id: str, correlation_id: str) -> None:
        self._blocking_redis.zrem(IN_FLIGHT_PREFIX + customer_id, correlation_id)
