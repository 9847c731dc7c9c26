"""A local stand-in for the Azure Functions host and its Python worker.

Every invocation goes through the real Python worker library (``azure-functions-runtime``) with the
protocol messages the Functions host sends: the library indexes the Python v2 (decorator) app and builds
the ``azure.functions`` objects. The host serves the HTTP triggers on uvicorn and drives the Service Bus
triggers with azure-servicebus receivers configured from ``host.json``.

Run it with ``python -m local_functions_host``; see docs/local-functions-host.md.
"""
