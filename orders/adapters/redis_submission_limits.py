"""Per-customer submission limits in Redis, shared by every intake replica; only short-lived state.

- **In flight**: a sorted set per customer of the correlationIds accepted and not yet terminal (score: when
  accepted). The processor removes an order once it has its outcome; an entry older than the in-flight
  window no longer counts, so a lost removal heals by itself.
- **Rate**: a counter per customer and minute, expiring with the minute.

Check and count are two pipelined round trips, not one atomic script (which the embedded Redis of the local
run lacks), so concurrent requests of one customer can overshoot a limit by the number in flight at once:
this is an abuse limit, not an accounting one. When Redis does not answer, the caller admits (fail open).
"""

from __future__ import annotations

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

    async def admit(self, customer_id: str, correlation_id: str) -> TooManyOrders | None:
        now = time.time()
        minute = int(now // 60)
        in_flight_key, rate_key = IN_FLIGHT_PREFIX + customer_id, f"{RATE_PREFIX}{customer_id}:{minute}"
        async with self._redis.pipeline(transaction=False) as pipeline:
            pipeline.zremrangebyscore(in_flight_key, "-inf", now - self.window_seconds)
            pipeline.zscore(in_flight_key, correlation_id)
            pipeline.zcard(in_flight_key)
            pipeline.get(rate_key)
            _, already_counted, in_flight, submitted = await pipeline.execute()
        if already_counted is not None:
            return None  # a retry of an order already counted
        if int(submitted or 0) >= self.max_per_minute:
            return TooManyOrders(f"more than {self.max_per_minute} orders a minute for this customer; slow down",
                                 retry_after_seconds=max(1, 60 - int(now % 60)))
        if in_flight >= self.max_in_flight:
            return TooManyOrders(f"{in_flight} orders of this customer are still being processed (at most "
                                 f"{self.max_in_flight}); retry once some have finished", retry_after_seconds=5)
        async with self._redis.pipeline(transaction=False) as pipeline:
            pipeline.zadd(in_flight_key, {correlation_id: now})
            pipeline.expire(in_flight_key, self.window_seconds)
            pipeline.incr(rate_key)
            pipeline.expire(rate_key, 120)
            await pipeline.execute()
        return None

    def release(self, customer_id: str, correlation_id: str) -> None:
        self._blocking_redis.zrem(IN_FLIGHT_PREFIX + customer_id, correlation_id)
