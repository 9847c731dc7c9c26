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
from collections.abc import Iterable, Mapping
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
    """Sends invocations to the worker and keeps count of the ones whose code is still running."""

    def __init__(self, worker: InProcessWorker, function_timeout: float | None = None) -> None:
        self.worker = worker
        self.function_timeout = function_timeout
        self._running = 0
        self.given_up = 0
        """Invocations the host stopped waiting for (timed out, killed by a restart, cut by a shutdown)."""
        # The invocations of the current worker, each with the future that fails it on a restart.
        self._in_worker: dict[str, asyncio.Future[None]] = {}

    @property
    def busy(self) -> int:
        """Invocations whose code has not returned yet (including those a restart gave up on)."""
        return self._running

    async def invoke(
        self,
        spec: FunctionSpec,
        input_data: Iterable[Any],
        trigger_metadata: Mapping[str, Any] | None = None,
        *,
        trace_parent: str = "",
        log_fields: Mapping[str, Any] | None = None,
    ) -> Any:
        """The worker's ``InvocationResponse``; raises :class:`InvocationFailed` (or a subclass) on failure."""
        invocation_id = str(uuid.uuid4())
        fields = {"functionName": spec.name, "invocationId": invocation_id, **(log_fields or {})}
        token = invocation_fields.set(fields)
        fields_by_invocation[invocation_id] = fields
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        killed: asyncio.Future[None] = loop.create_future()
        self._in_worker[invocation_id] = killed
        self._running += 1
        call = asyncio.ensure_future(self.worker.invoke(
            spec.function_id, invocation_id, input_data, trigger_metadata or {}, trace_parent=trace_parent))
        call.add_done_callback(lambda _: self._returned(invocation_id))
        try:
            done, _ = await asyncio.wait({call, killed}, timeout=self.function_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if call in done:
                response = call.result()
            elif killed in done:
                killed.result()
                raise AssertionError("unreachable")  # pragma: no cover - killed only ever fails
            else:
                self._restart_worker(spec, invocation_id)
                raise FunctionTimedOut(
                    f"Timeout value of {_duration(self.function_timeout)} exceeded by function "
                    f"'Functions.{spec.name}' (Id: '{invocation_id}'). Initiating cancellation.")
        except BaseException as exc:
            if not call.done():
                # Cancelled (shutdown), timed out or killed: nobody waits for the worker's answer any more.
                # An async function is cancelled with it; a synchronous one's thread runs to its end.
                self.given_up += 1
                call.add_done_callback(_discard)
                call.cancel()
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
            self._in_worker.pop(invocation_id, None)
            invocation_fields.reset(token)

    def _returned(self, invocation_id: str) -> None:
        self._running -= 1
        fields_by_invocation.pop(invocation_id, None)

    def _restart_worker(self, spec: FunctionSpec, invocation_id: str) -> None:
        others = [(other, future) for other, future in self._in_worker.items() if other != invocation_id]
        log.error(
            "Function %s timed out (functionTimeout %s); restarting the worker: %d other invocation(s) in it "
            "fail too.", spec.name, _duration(self.function_timeout), len(others),
            extra={"functionName": spec.name, "invocationId": invocation_id},
        )
        self._in_worker = {invocation_id: self._in_worker[invocation_id]}
        for other, future in others:
            if not future.done():
                future.set_exception(WorkerRestarted(
                    f"Invocation {other} ended: the worker was restarted after 'Functions.{spec.name}' timed out."))
        self.worker.restart()

    def close(self) -> None:
        self.worker.close()


def _discard(call: asyncio.Future[Any]) -> None:
    if not call.cancelled():
        call.exception()  # retrieved, so asyncio does not report it as never retrieved


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unbounded"
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
