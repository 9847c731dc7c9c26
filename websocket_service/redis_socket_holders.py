"""``RedisSocketHolderRegistry``: the correlation registry in Redis (redis-py asyncio).

One hash per correlationId, ``<prefix><correlationId>``: field = instance id, value = where that instance
is reached internally and until when the entry counts. The key's TTL is refreshed while a socket follows
the order and the field is deleted when the last one closes. Entries of an instance that died are
ignored once their ``until`` passes, even while other instances keep the key alive.

Redis being down never stops the service: the first failure is logged once, calls fail fast, and the
periodic refresh restores every registration when Redis is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from service_platform.redis_clients import redis_client
from websocket_service.core import RegistryEntry
from websocket_service.ports import RegistryUnavailable

log = logging.getLogger("websocket_service.registry")

# The epoch is short-lived state too; when it expires the instances just re-register once.
EPOCH_TTL_SECONDS = 86_400


class RedisSocketHolderRegistry:
    def __init__(
        self,
        client: redis.Redis,
        *,
        instance_id: str,
        internal_url: str,
        ttl_seconds: float,
        prefix: str = "ws:corr:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._instance_id = instance_id
        self._internal_url = internal_url
        self._ttl = ttl_seconds
        self._prefix = prefix
        self._clock = clock
        self._available = True

    @classmethod
    def from_url(cls, url: str, *, entra_auth: bool = False, **kwargs: object) -> RedisSocketHolderRegistry:
        """A registry on ``url`` that fails fast (short timeouts, no retries) so Redis outages never stall sockets."""
        client = redis_client(url, entra_auth=entra_auth, timeout_seconds=1.0, connect_timeout_seconds=0.5,
                              retry=Retry(NoBackoff(), 0), health_check_interval=15, decode_responses=True)
        return cls(client, **kwargs)  # type: ignore[arg-type]

    @property
    def available(self) -> bool:
        return self._available

    def _key(self, correlation_id: str) -> str:
        return f"{self._prefix}{correlation_id}"

    def _up(self) -> None:
        if not self._available:
            self._available = True
            log.info("Redis is reachable again; routing across instances resumes")

    def _down(self, exc: Exception) -> None:
        if self._available:
            self._available = False
            log.error("Redis is unreachable; serving local subscribers and current status only until it is back",
                      extra={"error": f"{type(exc).__name__}: {exc}"})

    async def register(self, correlation_ids: Sequence[str]) -> bool:
        entry = RegistryEntry(self._instance_id, self._internal_url, self._clock() + self._ttl).encode()
        ttl = max(1, int(self._ttl + 0.999))
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for correlation_id in correlation_ids:
                    key = self._key(correlation_id)
                    pipe.hset(key, self._instance_id, entry)
                    pipe.expire(key, ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._down(exc)
            return False
        self._up()
        return True

    async def deregister(self, correlation_ids: Sequence[str]) -> bool:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for correlation_id in correlation_ids:
                    pipe.hdel(self._key(correlation_id), self._instance_id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._down(exc)
            return False
        self._up()
        return True

    async def lookup(self, correlation_ids: Sequence[str]) -> dict[str, list[RegistryEntry]]:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for correlation_id in correlation_ids:
                    pipe.hgetall(self._key(correlation_id))
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise RegistryUnavailable(str(exc)) from exc
        self._up()
        found: dict[str, list[RegistryEntry]] = {}
        for correlation_id, fields in zip(correlation_ids, replies, strict=True):
            entries = [e for k, v in fields.items() if (e := RegistryEntry.decode(k, v)) is not None]
            if entries:
                found[correlation_id] = entries
        return found

    async def started_at(self) -> float:
        """The registry's epoch: set (NX) by the first instance to touch a Redis that came back empty."""
        key = f"{self._prefix}epoch"
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(key, repr(self._clock()), nx=True, ex=EPOCH_TTL_SECONDS)
                pipe.get(key)
                _, value = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise RegistryUnavailable(str(exc)) from exc
        self._up()
        return float(value)

    async def ping(self) -> bool:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            self._down(exc)
            return False
        self._up()
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
