"""Helpers that start private, throw-away servers for tests, benchmarks and the local run.

Nothing here touches the machine's standard instances (Redis on 6379, PostgreSQL on 5432): every server
is started on a free port with its own data directory and stopped when the context exits.
"""
