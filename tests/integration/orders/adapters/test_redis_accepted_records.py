"""Concurrent ``Accepted`` records share pipelined round trips to a private redis-server, and every one of them
is stored with its TTL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from service_platform.redis_clients import redis_client
from orders.adapters.redis_accepted_records import RedisAcceptedRecordStore
from orders.domain.model import AcceptedRecord

CONCURRENT = 300
ACCEPTED_AT = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)  # the record keeps milliseconds


def _set_calls(info: dict[str, object]) -> int:
    stats = info.get("cmdstat_set")
    return int(stats["calls"]) if isinstance(stats, dict) else 0


def test_concurrent_records_are_each_stored_with_their_ttl_in_few_round_trips(redis_server) -> None:
    records = [AcceptedRecord(str(uuid.uuid4()), f"c-{n % 7}", "EUR", ACCEPTED_AT) for n in range(CONCURRENT)]

    async def scenario() -> tuple[list[AcceptedRecord | None], list[int], int, int]:
        client = redis_client(redis_server.url)
        registry = RedisAcceptedRecordStore(client)
        try:
            sets_before = _set_calls(await client.info("commandstats"))
            connections_before = int((await client.info("stats"))["total_connections_received"])

            await asyncio.gather(*(registry.record_accepted(record, ttl_seconds=90_000) for record in records))
            sets = _set_calls(await client.info("commandstats")) - sets_before
            connections = int((await client.info("stats"))["total_connections_received"]) - connections_before
            found = [await registry.get_accepted(record.correlation_id) for record in records]
            ttls = [await client.ttl(f"orders:accepted:{record.correlation_id}") for record in records]
            return found, ttls, sets, connections
        finally:
            await client.aclose()

    found, ttls, sets, connections = asyncio.run(scenario())
    assert found == records
    assert all(89_990 < ttl <= 90_000 for ttl in ttls)
    assert sets == CONCURRENT
    # One SET per call would need a pooled connection per concurrent call; batches need a handful.
    assert connections < CONCURRENT // 10


def test_an_idempotency_key_binds_to_the_first_body_even_under_concurrent_claims(redis_server) -> None:
    correlation_id = str(uuid.uuid4())

    async def scenario() -> tuple[list[str | None], str | None, str | None, int]:
        client = redis_client(redis_server.url)
        store = RedisAcceptedRecordStore(client)
        try:
            # Ten concurrent requests, two different bodies: exactly one body wins the key.
            claims = await asyncio.gather(*(store.claim_idempotency_key(correlation_id, f"body-{n % 2}", 90_000)
                                            for n in range(10)))
            winner = await client.get(f"orders:idempotency:{correlation_id}")
            same_again = await store.claim_idempotency_key(correlation_id, winner.decode(), 90_000)
            ttl = await client.ttl(f"orders:idempotency:{correlation_id}")
            return claims, winner.decode(), same_again, ttl
        finally:
            await client.aclose()

    claims, winner, same_again, ttl = asyncio.run(scenario())
    loser = "body-1" if winner == "body-0" else "body-0"
    assert sorted(claims, key=str) == sorted([None] * 5 + [winner] * 5, key=str)
    assert same_again is None and 0 < ttl <= 90_000
    assert loser not in claims
