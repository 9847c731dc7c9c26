"""Invocations as the host runs them: through the worker, under ``functionTimeout``, logged with their identity.

Each invocation gets an id, its fields (function name, invocation id, and for Service Bus the message id,
CorrelationId and session id) on every log record it causes, and a ``Executed 'Functions.<name>'`` line.
When one passes ``functionTimeout`` the host does what the Functions host does: the invocation fails, the
worker is restarted, and every other invocation running in that worker fails with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .json_logging import fields_by_invocation, invocation_fields
from .loader import FunctionSpec
from .worker import InProcessWorker, InvocationFailed

results_log = logging.getLogger("local_functions_host.results")
log = logging.getLogger("local_functions_host")


class FunctionTimedOut(InvocationFailed):
    """The invocation ran longer than ``functionTimeout``."""


class WorkerRestarted(InvocationFailed):
    """Another invocation timed out and the worker this one ran in was restarted."""


class Invoker:
    """Sends invocations to the worker and keeps count of the ones under way."""

    def __init__(self, worker: InProcessWorker, function_timeout: float | None = None) -> None:
        self.worker = worker
        self.function_timeout = function_timeout
        self._running = 0
        self.given_up = 0
        """Invocations the host stopped waiting for (timed out, ended by a restart, cut by a shutdown)."""
        # The task of each invocation under way in the current worker, and those a restart ended.
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._ended_by_restart: dict[str, str] = {}

    @property
    def busy(self) -> int:
        """Invocations under way."""
        return self._running

    async def invoke(
        self,
        spec: FunctionSpec,
        trigger_data: Any,
        trigger_metadata: Mapping[str, Any] | None = None,
        *,
        trace_parent: str = "",
        log_fields: Mapping[str, Any] | None = None,
    ) -> Any:
        """The worker's ``InvocationResponse`` for ``trigger_data`` (the trigger's ``TypedData``) and its
        metadata; raises :class:`InvocationFailed` (or a subclass) on failure.

        The worker's request runs in the caller's task, under ``functionTimeout``. Ending an invocation
        (timeout, restart, shutdown) cancels that task: an async function is cancelled with it, and a
        synchronous one's thread runs to its end while nobody waits for it any more.
        """
        invocation_id = str(uuid.uuid4())
        binding = self.worker.protos.ParameterBinding(name=spec.trigger_param, data=trigger_data)
        fields = {"functionName": spec.name, "invocationId": invocation_id, **(log_fields or {})}
        token = invocation_fields.set(fields)
        fields_by_invocation[invocation_id] = fields
        started = time.perf_counter()
        task = asyncio.current_task()
        assert task is not None
        self._tasks[invocation_id] = task
        self._running += 1
        try:
            try:
                async with asyncio.timeout(self.function_timeout):
                    response = await self.worker.invoke(spec.function_id, invocation_id, [binding],
                                                        trigger_metadata or {}, trace_parent=trace_parent)
            except TimeoutError:
                self.given_up += 1
                self._restart_worker(spec, invocation_id)
                raise FunctionTimedOut(
                    f"Timeout value of {_duration(self.function_timeout)} exceeded by function "
                    f"'Functions.{spec.name}' (Id: '{invocation_id}'). Initiating cancellation.") from None
            except asyncio.CancelledError:
                self.given_up += 1
                reason = self._ended_by_restart.pop(invocation_id, None)
                if reason is None:
                    raise  # a shutdown: the caller leaves the message to its lock
                task.uncancel()
                raise WorkerRestarted(reason) from None
        except BaseException as exc:
            elapsed = (time.perf_counter() - started) * 1000
            results_log.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)%s",
                spec.name, invocation_id, elapsed, f"\n{exc}" if isinstance(exc, InvocationFailed) else "",
                extra={"durationMs": round(elapsed, 3), "outcome": "Failed"},
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
            return response
        finally:
            self._running -= 1
            self._tasks.pop(invocation_id, None)
            fields_by_invocation.pop(invocation_id, None)
            invocation_fields.reset(token)

    def _restart_worker(self, spec: FunctionSpec, invocation_id: str) -> None:
        others = [(other, task) for other, task in self._tasks.items() if other != invocation_id]
        log.error(
            "Function %s timed out (functionTimeout %s); restarting the worker: %d other invocation(s) in it "
            "fail too.", spec.name, _duration(self.function_timeout), len(others),
            extra={"functionName": spec.name, "invocationId": invocation_id},
        )
        for other, task in others:
            self._ended_by_restart[other] = (
                f"Invocation {other} ended: the worker was restarted after 'Functions.{spec.name}' timed out.")
            task.cancel()
        self.worker.restart()

    def close(self) -> None:
        self.worker.close()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unbounded"
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
