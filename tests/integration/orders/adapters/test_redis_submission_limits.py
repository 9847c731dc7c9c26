"""Per-customer submission limits on a private redis-server: orders in flight and per minute, released by the
processing path, all state TTL-bound."""

from __future__ import annotations

import uuid

import pytest

from orders.adapters.redis_submission_limits import IN_FLIGHT_PREFIX, RATE_PREFIX, RedisSubmissionLimiter
from service_platform.redis_clients import redis_client


@pytest.fixture
async def limiter_factory(redis_server):
    clients = []

    def make(**limits) -> RedisSubmissionLimiter:
        client, blocking = redis_client(redis_server.url), redis_client(redis_server.url, blocking=True)
        clients.append((client, blocking))
        options = {"max_in_flight": 1000, "max_per_minute": 1000, "in_flight_window_seconds": 900} | limits
        return RedisSubmissionLimiter(client, blocking, **options)

    yield make
    for client, blocking in clients:
        await client.aclose()
        blocking.close()


def customer() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


async def test_orders_in_flight_are_capped_until_processing_releases_one(limiter_factory) -> None:
    limiter, who = limiter_factory(max_in_flight=3), customer()
    ids = [str(uuid.uuid4()) for _ in range(4)]
    assert [await limiter.admit(who, cid) for cid in ids[:3]] == [None, None, None]
    refused = await limiter.admit(who, ids[3])
    assert refused is not None and "3 orders of this customer are still being processed" in str(refused)
    assert await limiter.admit(customer(), ids[3]) is None, "another customer is not affected"
    assert await limiter.admit(who, ids[0]) is None, "a retry of an order already counted is admitted"
    limiter.release(who, ids[0])
    assert await limiter.admit(who, ids[3]) is None


async def test_the_rate_limit_answers_when_to_retry(limiter_factory) -> None:
    limiter, who = limiter_factory(max_per_minute=5), customer()
    results = [await limiter.admit(who, str(uuid.uuid4())) for _ in range(6)]
    assert results[:5] == [None] * 5
    refused = results[5]
    assert refused is not None and "more than 5 orders a minute" in str(refused)
    assert 1 <= refused.retry_after_seconds <= 60


async def test_every_key_expires(limiter_factory, redis_server) -> None:
    limiter, who = limiter_factory(in_flight_window_seconds=120), customer()
    await limiter.admit(who, str(uuid.uuid4()))
    client = redis_client(redis_server.url)
    try:
        keys = [key.decode() async for key in client.scan_iter(match=f"*{who}*")]
        assert {key.split(who)[0] for key in keys} == {IN_FLIGHT_PREFIX, RATE_PREFIX}
        ttls = [await client.ttl(key) for key in keys]
        assert all(0 < ttl <= 120 for ttl in ttls)
    finally:
        await client.aclose()


async def test_orders_older_than_the_window_stop_counting(limiter_factory, redis_server) -> None:
    """A release lost with a crashed processor heals: the entry ages out of the in-flight window."""
    limiter, who = limiter_factory(max_in_flight=1, in_flight_window_seconds=60), customer()
    stale = str(uuid.uuid4())
    client = redis_client(redis_server.url)
    try:
        await client.zadd(IN_FLIGHT_PREFIX + who, {stale: 1.0})  # accepted long ago, never released
    finally:
        await client.aclose()
    assert await limiter.admit(who, str(uuid.uuid4())) is None


async def test_a_redis_that_does_not_answer_raises_so_the_caller_can_fail_open() -> None:
    from local_servers.ports import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    limiter = RedisSubmissionLimiter(redis_client(url), redis_client(url, blocking=True), max_in_flight=1,
                                     max_per_minute=1, in_flight_window_seconds=60)
    with pytest.raises(Exception):
        await limiter.admit("c-1", str(uuid.uuid4()))
    with pytest.raises(Exception):
        limiter.release("c-1", str(uuid.uuid4()))
