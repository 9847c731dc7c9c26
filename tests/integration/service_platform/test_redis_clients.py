"""The shared Redis clients against a private redis-server: a burst of concurrent commands beyond the pool's
connections waits for a free one instead of failing as if Redis were down."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

from redis.asyncio import Redis
from redis.exceptions import MaxConnectionsError

from service_platform.redis_clients import MAX_CONNECTIONS, redis_client

BURST = 3 * MAX_CONNECTIONS


async def test_a_burst_beyond_the_pool_waits_for_connections_and_every_command_succeeds(redis_server) -> None:
    key = f"test:burst:{uuid.uuid4()}"
    client = redis_client(redis_server.url)
    try:
        results = await asyncio.gather(*(client.incr(key) for _ in range(BURST)))
        assert sorted(results) == list(range(1, BURST + 1))
        assert len(client.connection_pool._in_use_connections) == 0
        assert 0 < len(client.connection_pool._available_connections) <= MAX_CONNECTIONS
    finally:
        await client.delete(key)
        await client.aclose()


async def test_redis_pys_own_pool_fails_the_same_burst(redis_server) -> None:
    """Why the clients use a blocking pool: the plain one refuses every command past its connections."""
    client = Redis.from_url(redis_server.url, max_connections=MAX_CONNECTIONS)
    try:
        results = await asyncio.gather(*(client.ping() for _ in range(BURST)), return_exceptions=True)
        assert any(isinstance(result, MaxConnectionsError) for result in results)
    finally:
        await client.aclose()


def test_the_synchronous_client_waits_too(redis_server) -> None:
    key = f"test:burst-sync:{uuid.uuid4()}"
    client = redis_client(redis_server.url, blocking=True, max_connections=4)
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: client.incr(key), range(200)))
        assert sorted(results) == list(range(1, 201))
    finally:
        client.delete(key)
        client.close()
