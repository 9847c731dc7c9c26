"""Calling a function the way the worker does: async functions on the loop, sync ones in a thread pool.

Each call gets an invocation id, an ``azure.functions.Context`` when the function asks for ``context``,
and the invocation's identity in the log context. A non-``None`` result from a function without a
``$return`` binding fails the invocation, as it does under the worker.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.functions import _abc as functions_abc

from .json_logging import invocation_fields
from .loader import FunctionSpec

THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
results_log = logging.getLogger("local_functions_host.results")
_thread_local = threading.local()


class TraceContext(functions_abc.TraceContext):
    def __init__(self, trace_parent: str = "", trace_state: str = "", attributes: Mapping[str, str] | None = None):
        self._trace_parent = trace_parent
        self._trace_state = trace_state
        self._attributes = dict(attributes or {})

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return self._trace_state

    @property
    def attributes(self) -> dict[str, str]:
        return self._attributes


class RetryContext(functions_abc.RetryContext):
    """Function-level retry policies are not run locally: always the first attempt."""

    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(functions_abc.Context):
    def __init__(self, spec: FunctionSpec, invocation_id: str, trace_context: TraceContext) -> None:
        self._spec = spec
        self._invocation_id = invocation_id
        self._trace_context = trace_context

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return _thread_local

    @property
    def function_name(self) -> str:
        return self._spec.name

    @property
    def function_directory(self) -> str:
        return self._spec.directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> RetryContext:
        return RetryContext()


class Invoker:
    """Runs invocations; owns the thread pool for synchronous functions."""

    def __init__(self, thread_count: int | None = None) -> None:
        if thread_count is None:
            configured = os.environ.get(THREAD_COUNT_SETTING, "").strip()
            thread_count = int(configured) if configured.isdigit() and int(configured) > 0 else None
        self._executor = ThreadPoolExecutor(max_workers=thread_count, thread_name_prefix="function")
        self._busy = 0
        self._busy_lock = threading.Lock()

    @property
    def busy(self) -> int:
        """Synchronous invocations whose thread is still running."""
        return self._busy

    async def invoke(
        self,
        spec: FunctionSpec,
        trigger_value: Any,
        *,
        trace_parent: str = "",
        log_fields: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call ``spec`` with its trigger argument; returns its result or raises what it raised."""
        invocation_id = str(uuid.uuid4())
        fields = {"functionName": spec.name, "invocationId": invocation_id, **(log_fields or {})}
        token = invocation_fields.set(fields)
        started = time.perf_counter()
        try:
            args: dict[str, Any] = {spec.trigger_param: trigger_value}
            if spec.requires_context:
                args["context"] = InvocationContext(spec, invocation_id, TraceContext(trace_parent))
            if spec.is_async:
                result = await spec.func(**args)
            else:
                loop = asyncio.get_running_loop()
                context = contextvars.copy_context()
                with self._busy_lock:
                    self._busy += 1
                result = await loop.run_in_executor(self._executor, self._call, context, invocation_id, spec, args)
            if result is not None and not spec.has_return:
                raise RuntimeError(
                    f"function {spec.name!r} has no $return binding but returned a {type(result).__name__}"
                )
        except BaseException as exc:
            results_log.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)",
                spec.name, invocation_id, (time.perf_counter() - started) * 1000,
                exc_info=exc if isinstance(exc, Exception) else None,
                extra={"durationMs": round((time.perf_counter() - started) * 1000, 3), "outcome": "Failed"},
            )
            raise
        else:
            if results_log.isEnabledFor(logging.INFO):
                elapsed = (time.perf_counter() - started) * 1000
                results_log.info(
                    "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)",
                    spec.name, invocation_id, elapsed,
                    extra={"durationMs": round(elapsed, 3), "outcome": "Succeeded"},
                )
            return result
        finally:
            invocation_fields.reset(token)

    def _call(self, context: contextvars.Context, invocation_id: str, spec: FunctionSpec, args: dict[str, Any]) -> Any:
        # Counted until the thread really returns: cancelling the awaiting task does not stop it.
        try:
            return _call_in_thread(context, invocation_id, spec, args)
        finally:
            with self._busy_lock:
                self._busy -= 1

    def close(self, wait: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)


def _call_in_thread(context: contextvars.Context, invocation_id: str, spec: FunctionSpec, args: dict[str, Any]) -> Any:
    def call() -> Any:
        _thread_local.invocation_id = invocation_id
        return spec.func(**args)

    return context.run(call)
