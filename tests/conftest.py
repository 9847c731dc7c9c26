"""Fixtures shared by the whole suite: private Redis and PostgreSQL servers on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_servers.postgres_cluster import PostgresCluster, running_postgres
from local_servers.redis_server import RedisServer, running_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the whole run; tests use their own key prefixes or flush it."""
    with running_redis() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    with running_postgres() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres_cluster.create_database()
