"""Composition of the local host: settings, indexing, the HTTP server and the Service Bus listeners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service_platform.azure_identity import close_process_credential
from service_platform.heap import freeze_long_lived_objects
from service_platform.inherited_socket import inherited_listener
from service_platform.telemetry import TelemetrySettings, configure_telemetry
from service_platform.telemetry import configured as configured_telemetry

from .app_settings import LocalSettings, apply_local_settings, selected_function_names
from .connections import resolve_connection
from .errors import HostConfigurationError
from .host_config import HostConfig, load_host_config
from .http_app import BODY_LIMIT_SETTING, DEFAULT_BODY_LIMIT, CorsPolicy, FunctionsHttpApp
from .invocation import Invoker
from .loader import FunctionSpec, IndexedApp, index_app
from .servicebus_listener import ServiceBusListener
from .worker import InProcessWorker

log = logging.getLogger("local_functions_host")

DEFAULT_PORT = 7071
DEFAULT_SHUTDOWN_TIMEOUT = 25.0
# On Kubernetes (KUBERNETES_SERVICE_HOST set) SIGTERM puts the Functions host in drain mode, and its stop
# waits at most this long for invocations under way.
KUBERNETES_DRAIN_TIMEOUT = 10.0
VERSION = "4-local"


@dataclass(frozen=True)
class HostOptions:
    script_root: Path = Path(".")
    host: str = "127.0.0.1"
    port: int | None = None
    functions: Sequence[str] | None = None
    shutdown_timeout: float | None = None
    """Seconds to let invocations finish on SIGTERM; default: the host's 10 s on Kubernetes, else 25 s."""
    cors: str | None = None


@dataclass(frozen=True)
class PreparedApp:
    """Everything known before anything starts: what will run, and how."""

    local_settings: LocalSettings
    host_config: HostConfig
    indexed: IndexedApp
    functions: tuple[FunctionSpec, ...]
    skipped: tuple[FunctionSpec, ...]
    port: int
    cors: CorsPolicy | None
    worker: InProcessWorker


def prepare(options: HostOptions, environ: MutableMapping[str, str] | None = None) -> PreparedApp:
    """Read settings and host.json, import the app and pick the functions to run. Opens no connection."""
    env = os.environ if environ is None else environ
    root = options.script_root.resolve()
    if not root.is_dir():
        raise HostConfigurationError(f"Script root {root} is not a folder.")
    local_settings = apply_local_settings(root, env)
    # After local.settings.json: its Values may hold AzureFunctionsJobHost__* overrides of host.json.
    host_config = load_host_config(root, env)
    # The host's spans (HTTP requests, Service Bus deliveries) and the app's share this process's exporters,
    # as the worker shares the host's trace context; before indexing, which reads PYTHON_ENABLE_OPENTELEMETRY.
    configure_telemetry("functions", TelemetrySettings.from_environ(env))
    worker = InProcessWorker()
    indexed = index_app(root, env, worker)

    wanted = list(options.functions or []) or selected_function_names(env) or list(host_config.functions)
    known = {spec.name: spec for spec in indexed.functions}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise HostConfigurationError(
            f"Selected function(s) {', '.join(repr(n) for n in unknown)} do not exist in {indexed.entry_file}; "
            f"the app has: {', '.join(sorted(known)) or 'no functions'}."
        )
    chosen = [known[name] for name in wanted] if wanted else list(indexed.functions)
    runnable = tuple(spec for spec in chosen if spec.supported)
    skipped = tuple(spec for spec in chosen if not spec.supported)
    for spec in runnable:
        if spec.service_bus is not None:
            if spec.service_bus.dead_letter and spec.service_bus.sessions:
                raise HostConfigurationError(
                    f"Function {spec.name!r} reads a dead-letter queue with isSessionsEnabled=true; dead-letter "
                    "queues are not session-enabled. Remove is_sessions_enabled from its trigger."
                )
            resolve_connection(spec.service_bus.connection, env, function_name=spec.name)

    port = options.port
    if port is None:
        configured = local_settings.host.get("LocalHttpPort")
        port = int(configured) if configured else DEFAULT_PORT
    cors = CorsPolicy.parse(
        options.cors if options.cors is not None else local_settings.host.get("CORS"),
        allow_credentials=bool(local_settings.host.get("CORSCredentials", False)),
    )
    return PreparedApp(
        local_settings=local_settings,
        host_config=host_config,
        indexed=indexed,
        functions=runnable,
        skipped=skipped,
        port=port,
        cors=cors,
        worker=worker,
    )


class _Server:
    """uvicorn's server without its own signal handling: the host owns SIGTERM/SIGINT."""

    def __init__(self, config: Any) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.server = Server(config)


class FunctionsHost:
    """The running host; ``await run()`` serves until ``request_stop()`` (or SIGTERM/SIGINT)."""

    def __init__(self, prepared: PreparedApp, options: HostOptions, environ: Mapping[str, str] | None = None) -> None:
        self.prepared = prepared
        self.options = options
        env = os.environ if environ is None else environ
        self.host_id = uuid.uuid4().hex[:12]
        self.started_at = time.monotonic()
        self.state = "Initializing"
        self.invoker = Invoker(prepared.worker, prepared.host_config.function_timeout)
        self.shutdown_timeout = options.shutdown_timeout
        if self.shutdown_timeout is None:
            on_kubernetes = bool(env.get("KUBERNETES_SERVICE_HOST"))
            self.shutdown_timeout = KUBERNETES_DRAIN_TIMEOUT if on_kubernetes else DEFAULT_SHUTDOWN_TIMEOUT
        self.listeners = [
            ServiceBusListener(
                spec,
                resolve_connection(spec.service_bus.connection, env, function_name=spec.name),
                prepared.host_config.service_bus,
                self.invoker,
            )
            for spec in prepared.functions
            if spec.service_bus is not None
        ]
        body_limit = int(env.get(BODY_LIMIT_SETTING) or DEFAULT_BODY_LIMIT)
        self.http_app = FunctionsHttpApp(
            prepared.functions,
            route_prefix=prepared.host_config.route_prefix,
            invoker=self.invoker,
            status=self.status,
            body_limit=body_limit,
            cors=prepared.cors,
        )
        self.asgi_app: Any = self.http_app
        if configured_telemetry() is not None:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
            from opentelemetry.metrics import NoOpMeterProvider

            # The server span of every request, continuing the caller's traceparent (the Functions host's
            # request span in Azure); the app names it after the route it matched.
            # The middleware's own HTTP metrics are left out (a no-op meter): they cost a tenth of a request's
            # CPU, and the Functions host reports requests itself.
            self.asgi_app = OpenTelemetryMiddleware(self.http_app, exclude_spans=["receive", "send"],
                                                    meter_provider=NoOpMeterProvider())
        self._stop_requested: asyncio.Event | None = None
        self._server: Any = None
        self.drained = True
        self.exit_without_threads = False
        self.port: int | None = None

    def status(self) -> tuple[int, dict[str, Any]]:
        body = {
            "id": self.host_id,
            "state": self.state,
            "version": VERSION,
            "processUptime": int((time.monotonic() - self.started_at) * 1000),
            "functions": [spec.name for spec in self.prepared.functions],
            "listeners": [
                {
                    "function": listener.spec.name,
                    "entity": listener.trigger.entity,
                    "deadLetter": listener.trigger.dead_letter,
                    "sessions": listener.trigger.sessions,
                    "state": str(listener.state),
                    "lastError": listener.last_error,
                }
                for listener in self.listeners
            ],
        }
        return (200 if self.state == "Running" else 503), body

    def request_stop(self) -> None:
        if self._stop_requested is None:
            return
        if self._stop_requested.is_set():
            # A second signal: stop waiting for work under way.
            if self._server is not None:
                self._server.force_exit = True
            return
        self._stop_requested.set()

    async def run(self) -> None:
        import uvicorn

        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_stop)

        sock = inherited_listener() or _bind(self.options.host, self.prepared.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.asgi_app,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(self.shutdown_timeout)),
        )
        self._server = _Server(config).server
        server_task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-server")
        while not self._server.started and not server_task.done():
            await asyncio.sleep(0.01)
        if server_task.done():
            sock.close()
            server_task.result()
            raise HostConfigurationError(f"The HTTP server on {self.options.host}:{self.port} did not start.")

        for listener in self.listeners:
            await listener.start()
        self.state = "Running"
        self._announce()
        # The host, the worker library and the indexed app live as long as the process: out of the way of
        # every full garbage collection from now on (service_platform.heap says why).
        freeze_long_lived_objects("local Functions host started")

        stop_wait = asyncio.create_task(self._stop_requested.wait())
        await asyncio.wait({stop_wait, server_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        self.state = "Stopping"
        log.info("Stopping: no new messages or requests are taken; waiting for invocations under way.")
        self._server.should_exit = True
        timeout = self.shutdown_timeout
        stopping_since = time.monotonic()
        await asyncio.gather(
            *(listener.stop(timeout) for listener in self.listeners),
            asyncio.wait_for(asyncio.shield(server_task), timeout=timeout + 5),
            return_exceptions=True,
        )
        sock.close()
        # Work still under way after the shutdown timeout (a blocked synchronous function, say) cannot
        # be cancelled; the process then exits without waiting for those threads.
        self.drained = self.invoker.busy == 0 and time.monotonic() - stopping_since < timeout
        # Threads of invocations given up on earlier (functionTimeout) may still run: exit without joining them.
        self.exit_without_threads = not self.drained or self.invoker.given_up > 0
        if not self.drained:
            log.warning("Invocations were still running at the shutdown timeout; exiting without them.")
        self.invoker.close()
        if (telemetry := configured_telemetry()) is not None:
            telemetry.shutdown()  # export the spans still buffered, while the credential is still open
        close_process_credential()  # the listeners' identity-based clients shared it
        self.state = "Stopped"
        log.info("Stopped.")

    def base_url(self) -> str:
        host = self.options.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def _announce(self) -> None:
        base = self.base_url()
        lines = ["Functions:"]
        for spec in self.prepared.functions:
            if spec.http is not None:
                methods = ",".join(spec.http.methods) if spec.http.methods else "ALL"
                lines.append(f"    {spec.name}: [{methods}] {base}{self.http_app.url_path(spec)}")
            elif spec.service_bus is not None:
                trigger = spec.service_bus
                sessions = ", sessions" if trigger.sessions else ""
                lines.append(f"    {spec.name}: serviceBusTrigger ({trigger.source}{sessions})")
        for spec in self.prepared.skipped:
            lines.append(f"    {spec.name}: {spec.trigger_type} (not run by the local host)")
        lines.append(f"Local Functions host ready on {base} (status: {base}/admin/host/status)")
        print("\n".join(lines), flush=True)
        log.info(
            "Host started on %s with %d function(s)", base, len(self.prepared.functions),
            extra={
                "url": base,
                "functions": [spec.name for spec in self.prepared.functions],
                "scriptRoot": str(self.prepared.indexed.script_root),
            },
        )
        if any(spec.http and spec.http.auth_level != "ANONYMOUS" for spec in self.prepared.functions):
            log.info("Function keys are not checked locally (as with Core Tools); auth levels apply in Azure only.")
        if self.listeners and not self.prepared.host_config.service_bus.auto_complete_messages:
            log.warning(
                "host.json sets autoCompleteMessages=false, but the local host offers no ServiceBusMessageActions: "
                "messages whose function succeeds are not settled and come back after their lock expires "
                "(a failed one is abandoned, as the Functions host does)."
            )
        workers = os.environ.get("FUNCTIONS_WORKER_PROCESS_COUNT", "").strip()
        if workers and workers != "1":
            log.warning(
                "FUNCTIONS_WORKER_PROCESS_COUNT=%s: the local host runs one worker, in its own process; scale "
                "out with more host processes (replicas in Kubernetes) instead.", workers)
        for spec in self.prepared.skipped:
            log.warning("Function %s has a %s trigger, which the local host does not run.", spec.name, spec.trigger_type)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HostConfigurationError(
            f"Cannot listen on {host}:{port} ({exc.strerror}). Another process may be using the port; "
            "stop it or pass --port."
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_host(options: HostOptions) -> int:
    """Prepare and run the host in this process; returns the exit code."""
    from .json_logging import InvocationLevelFilter, configure_logging

    handler = configure_logging()
    try:
        os.chdir(options.script_root)
        prepared = prepare(HostOptions(**{**options.__dict__, "script_root": Path(".")}))
    except HostConfigurationError as exc:
        _report(exc)
        return 2
    except OSError as exc:
        _report(HostConfigurationError(f"Cannot use script root {options.script_root}: {exc.strerror}."))
        return 2
    levels = prepared.host_config.log_levels
    logging.getLogger().setLevel(levels.lowest)
    handler.addFilter(InvocationLevelFilter(levels.default, levels.for_function))
    host = FunctionsHost(prepared, options)
    try:
        runner = _runner()
        runner.run(host.run())
    except HostConfigurationError as exc:
        _report(exc)
        return 2
    if host.exit_without_threads:
        # Closing the loop (and interpreter exit) would join the threads still running functions.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    runner.close()
    return 0


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _report(exc: HostConfigurationError) -> None:
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, HostConfigurationError):
        import traceback

        traceback.print_exception(cause, file=sys.stderr)
    log.error("%s", exc)
    print(f"local_functions_host: error: {exc}", file=sys.stderr, flush=True)
