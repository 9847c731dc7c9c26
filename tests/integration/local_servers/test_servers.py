"""The private servers the suite starts are real and isolated from the machine's standard ones."""

import psycopg
import redis


def test_private_redis_is_not_the_standard_instance(redis_server):
    assert redis_server.port != 6379
    client = redis.Redis.from_url(redis_server.url)
    client.set("probe", "1", ex=5)
    assert client.get("probe") == b"1"
    assert client.config_get("save")["save"] == ""


def test_private_postgres_gives_each_test_an_empty_database(postgres_url, postgres_cluster):
    assert postgres_cluster.port != 5432
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        tables = conn.execute("select count(*) from information_schema.tables where table_schema='public'").fetchone()
    assert tables == (0,)
