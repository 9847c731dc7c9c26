"""A local stand-in for the Azure Functions host and its Python worker.

It indexes a Python v2 (decorator) function app the way the worker does, serves its HTTP triggers on
uvicorn and drives its Service Bus triggers with azure-servicebus receivers configured from ``host.json``.
Function code runs unchanged: it receives the same ``azure.functions`` objects it gets in Azure.

Run it with ``python -m local_functions_host``; see docs/local-functions-host.md.
"""
