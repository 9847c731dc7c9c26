"""The whole system on one machine, on local defaults: broker, Redis, SQLite, the local Functions host and
the WebSocket service as real processes. ``python -m local_stack`` runs it; tests and benchmarks use
``LocalStack`` with free ports."""
