"""The Python worker library (``azure-functions-runtime``) in this process, spoken to in the host's protocol.

In Azure the Functions host sends ``StreamingMessage`` requests over gRPC to a worker process, which hands
them to this library: ``worker_init_request`` (which indexes the app), ``functions_metadata_request``,
``function_load_request`` for each function, then one ``invocation_request`` per trigger. The local host
sends the very same messages to the very same library, in-process: the library imports the app, checks
its bindings, builds the ``azure.functions`` objects from the protocol's ``TypedData`` and runs synchronous
functions in its own thread pool, so nothing of that is re-implemented here.

In-process rather than over gRPC to a worker child process: a gRPC round trip measured about 2.5 ms per
invocation, and nothing the host's semantics need requires the process boundary except killing an
invocation's thread on ``functionTimeout`` (see :meth:`InProcessWorker.restart`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from . import worker_protocol
from .errors import HostConfigurationError

log = logging.getLogger("local_functions_host.worker")

# What the host reports about itself in the init request (a host version of the v4 line).
HOST_VERSION = "4.1040.0"


class InvocationFailed(Exception):
    """The worker reported the invocation as failed; the text is the exception it serialized."""


def _completed(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """The result of a worker request that never awaits (init, metadata, load), without an event loop.

    The host may index before its loop runs (and unit tests inside one), so these are stepped directly.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the worker library awaited during a request expected to complete at once")


class InProcessWorker:
    """One worker: ``index()`` once, then ``invoke()`` for each trigger."""

    def __init__(self, protos: SimpleNamespace | None = None) -> None:
        import azure_functions_runtime

        self.protos = protos or worker_protocol.load()
        self._library = azure_functions_runtime
        self._properties = {"protos": self.protos, "host": "127.0.0.1"}
        self._request_ids = itertools.count(1)

    def _request(self, **content: Any) -> SimpleNamespace:
        message = self.protos.StreamingMessage(request_id=str(next(self._request_ids)), **content)
        return SimpleNamespace(request=message, properties=self._properties)

    def index(self, script_root: Path) -> list[Any]:
        """Init (which imports and indexes the app), metadata and load: the function metadata the worker reports."""
        protos = self.protos
        root = str(script_root)
        init = _completed(self._library.worker_init_request(self._request(
            worker_init_request=protos.WorkerInitRequest(
                host_version=HOST_VERSION, function_app_directory=root, capabilities={}, log_categories={}))))
        if init.result.status != protos.StatusResult.Success:
            error = init.result.exception
            hint = (" The entry file needs exactly one module-level azure.functions.FunctionApp "
                    "(e.g. `from function_app.app import app`); register other functions as Blueprints."
                    if "top level function app" in error.message else "")
            trace = f"\n{error.stack_trace.strip()}" if error.stack_trace else ""
            raise HostConfigurationError(f"The Python worker could not index the app: {error.message}{hint}{trace}")
        metadata = _completed(self._library.functions_metadata_request(self._request(
            functions_metadata_request=protos.FunctionsMetadataRequest(function_app_directory=root))))
        if metadata.result.status != protos.StatusResult.Success:
            raise HostConfigurationError(f"The Python worker reported no functions: {metadata.result.exception.message}")
        functions = list(metadata.function_metadata_results)
        for function in functions:
            loaded = _completed(self._library.function_load_request(self._request(
                function_load_request=protos.FunctionLoadRequest(function_id=function.function_id, metadata=function))))
            if loaded.result.status != protos.StatusResult.Success:
                raise HostConfigurationError(
                    f"The Python worker could not load {function.name!r}: {loaded.result.exception.message}")
        self._library.start_threadpool_executor()
        return functions

    async def invoke(
        self,
        function_id: str,
        invocation_id: str,
        input_data: Iterable[Any],
        trigger_metadata: Mapping[str, Any],
        *,
        trace_parent: str = "",
    ) -> Any:
        """The worker's ``InvocationResponse``; raises :class:`InvocationFailed` if it reports a failure."""
        protos = self.protos
        request = protos.InvocationRequest(
            invocation_id=invocation_id,
            function_id=function_id,
            input_data=list(input_data),
            trigger_metadata=dict(trigger_metadata),
            trace_context=protos.RpcTraceContext(trace_parent=trace_parent),
            retry_context=protos.RetryContext(retry_count=0, max_retry_count=0),
        )
        response = await self._library.invocation_request(self._request(invocation_request=request))
        if response.result.status != protos.StatusResult.Success:
            error = response.result.exception
            raise InvocationFailed(error.message + (f"\n{error.stack_trace}" if error.stack_trace else ""))
        return response

    def restart(self) -> None:
        """What the host does on ``functionTimeout``: a fresh worker thread pool for what comes next.

        The real host kills the worker process, so every invocation in it dies. Threads cannot be killed
        in-process: those of the old pool run to their end, and the host discards what they return.
        """
        self._library.start_threadpool_executor()

    def close(self) -> None:
        pool = self._library.get_threadpool_executor()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
