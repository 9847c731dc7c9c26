"""OpenTelemetry for every process of the system, chosen by configuration only.

- ``APPLICATIONINSIGHTS_CONNECTION_STRING``: Azure Monitor, through Microsoft's distro
  (``azure-monitor-opentelemetry``), which also sends the log records;
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the other standard ``OTEL_EXPORTER_OTLP_*`` variables): OTLP over HTTP;
- ``LOCAL_TELEMETRY_DIR``: OTLP JSON lines, one file per process and signal, which ``python -m local_traces``
  and the order page read on a laptop.

Any of them may be combined; with none, nothing is configured and the API's no-op tracer costs next to
nothing. ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (OpenTelemetry's standard list, e.g. ``redis,sqlalchemy``)
leaves out the spans of those libraries: each of their calls costs CPU even when its trace is not sampled
(docs/benchmarks.md has the figures). Sampling is the SDK's standard configuration (``OTEL_TRACES_SAMPLER``,
``OTEL_TRACES_SAMPLER_ARG``; parent-based, always on by default); ``OTEL_SDK_DISABLED=true`` turns everything
off.

:func:`configure_telemetry` is called by each composition root on first use, never at import: the Functions
worker imports the app only to index it. Configuring opens no connection (exporters connect when they send).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# "Authorization=AAD" (the Functions host's setting): send to Application Insights with Entra ID tokens of the
# workload identity, as a resource with local authentication off requires.
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
LOCAL_DIR = "LOCAL_TELEMETRY_DIR"

#: The span attribute that names the order a span belongs to (``python -m local_traces`` looks traces up by it).
CORRELATION_ID_ATTRIBUTE = "orders.correlation_id"


#: Names of library instrumentations to leave out; of those applied here: httpx, redis, logging, sqlalchemy.
DISABLED_INSTRUMENTATIONS = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"

SAMPLER = "OTEL_TRACES_SAMPLER"
#: OpenTelemetry's default when OTEL_TRACES_SAMPLER is not set: every new trace, a caller's decision followed.
DEFAULT_SAMPLER = "parentbased_always_on"
_AZURE_MONITOR_SAMPLER_NAMES = {"traceidratio": "trace_id_ratio",
                                "parentbased_traceidratio": "parentbased_trace_id_ratio"}


@dataclass(frozen=True)
class TelemetrySettings:
    """Where telemetry goes, read from the standard variables (and ``LOCAL_TELEMETRY_DIR``)."""

    connection_string: str | None = None
    entra_auth: bool = False
    otlp_endpoint: str | None = None
    local_dir: Path | None = None
    disabled: bool = False
    service_name: str | None = None  # OTEL_SERVICE_NAME: overrides the name the service gives itself
    azure_client_id: str | None = None  # the workload identity Azure Monitor's exporter authenticates with
    sampler: str = DEFAULT_SAMPLER  # OTEL_TRACES_SAMPLER (its argument stays in OTEL_TRACES_SAMPLER_ARG)
    disabled_instrumentations: frozenset[str] = frozenset()  # OTEL_PYTHON_DISABLED_INSTRUMENTATIONS

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TelemetrySettings:
        env = os.environ if environ is None else environ
        local = (env.get(LOCAL_DIR) or "").strip()
        return cls(connection_string=(env.get(CONNECTION_STRING) or "").strip() or None,
                   entra_auth="authorization=aad" in (env.get(AUTHENTICATION_STRING) or "").replace(" ", "").lower(),
                   otlp_endpoint=(env.get(OTLP_ENDPOINT) or "").strip() or None,
                   local_dir=Path(local) if local else None,
                   disabled=(env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true",
                   service_name=(env.get("OTEL_SERVICE_NAME") or "").strip() or None,
                   azure_client_id=(env.get("AZURE_CLIENT_ID") or "").strip() or None,
                   sampler=(env.get(SAMPLER) or "").strip().lower() or DEFAULT_SAMPLER,
                   disabled_instrumentations=frozenset(
                       name.strip().lower() for name in (env.get(DISABLED_INSTRUMENTATIONS) or "").split(",")
                       if name.strip()))

    @property
    def azure_monitor_sampler(self) -> str:
        """``sampler`` as the Azure Monitor distro spells it. It knows the standard ratio samplers only as
        ``trace_id_ratio``/``parentbased_trace_id_ratio``, and for a name it does not know, or none, it
        samples at most 5 traces a second (its own default), not what OpenTelemetry's configuration says."""
        return _AZURE_MONITOR_SAMPLER_NAMES.get(self.sampler, self.sampler)

    @property
    def exporting(self) -> bool:
        return not self.disabled and bool(self.connection_string or self.otlp_endpoint or self.local_dir)


@dataclass
class Telemetry:
    """What :func:`configure_telemetry` set up for this process."""

    service: str
    settings: TelemetrySettings
    tracer_provider: Any
    meter_provider: Any
    exporters: list[str]

    def shutdown(self) -> None:
        """Export what is still buffered (a process about to exit calls this)."""
        for provider in (self.tracer_provider, self.meter_provider):
            try:
                provider.shutdown()
            except Exception:  # noqa: BLE001 - an exporter that cannot flush must not fail the shutdown
                log.warning("telemetry not flushed at shutdown", exc_info=True)


_configured: Telemetry | None = None
_lock = threading.Lock()


def configured() -> Telemetry | None:
    """This process's telemetry, if :func:`configure_telemetry` exported anything."""
    return _configured


def configure_telemetry(service: str, settings: TelemetrySettings | None = None) -> Telemetry | None:
    """Set up tracing, metrics and log correlation for the process once; later calls return the first result.

    ``service`` is ``service.name`` unless ``OTEL_SERVICE_NAME`` says otherwise.
    """
    global _configured
    settings = settings or TelemetrySettings.from_environ()
    if not settings.exporting:
        return None
    with _lock:
        if _configured is None:
            _configured = _configure(service, settings)
            log.info("telemetry exported", extra={"exporters": ",".join(_configured.exporters)})
    return _configured


def _configure(service: str, settings: TelemetrySettings) -> Telemetry:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = settings.service_name or service
    resource = Resource.create({"service.name": service,
                                "service.instance.id": f"{socket.gethostname()}-{os.getpid()}"})
    span_processors: list[Any] = []
    metric_readers: list[Any] = []
    exporters: list[str] = []
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The exporters read the endpoint and their other options from the standard OTEL_EXPORTER_OTLP_* variables.
        span_processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        metric_readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        exporters.append("otlp")
    if settings.local_dir:
        from opentelemetry.exporter.otlp.json.file import FileMetricExporter, FileSpanExporter

        settings.local_dir.mkdir(parents=True, exist_ok=True)
        stem = settings.local_dir / f"{service}-{os.getpid()}"
        span_processors.append(BatchSpanProcessor(FileSpanExporter(f"{stem}.traces.jsonl")))
        metric_readers.append(PeriodicExportingMetricReader(FileMetricExporter(f"{stem}.metrics.jsonl")))
        exporters.append(f"file:{settings.local_dir}")
    if settings.connection_string:
        from azure.monitor.opentelemetry import configure_azure_monitor

        # The distro builds the providers (with its exporters, sampler and log handler) and takes the other
        # processors and readers in. Service Bus spans are this project's own (see message_tracing): the
        # SDK's would be made on the batching sender's task, outside the order's trace.
        credential = None
        if settings.entra_auth:
            from service_platform.azure_identity import process_credential

            credential = process_credential(settings.azure_client_id)
        os.environ[SAMPLER] = settings.azure_monitor_sampler  # the distro reads the sampler from there only
        configure_azure_monitor(
            connection_string=settings.connection_string, credential=credential, resource=resource,
            span_processors=span_processors,
            metric_readers=metric_readers, enable_live_metrics=False,
            instrumentation_options={"azure_sdk": {"enabled": False}})
        exporters.insert(0, "azure-monitor")
        tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
    else:
        # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (parent-based always-on by default).
        tracer_provider = TracerProvider(resource=resource)
        for processor in span_processors:
            tracer_provider.add_span_processor(processor)
        meter_provider = MeterProvider(resource=resource, metric_readers=metric_readers)
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    _instrument_libraries(settings.disabled_instrumentations)
    return Telemetry(service, settings, tracer_provider, meter_provider, exporters)


def _instrument_libraries(disabled: frozenset[str]) -> None:
    # Each is process-wide and idempotent. Logging only adds the span's ids to every record (the JSON
    # formatter writes them as trace_id / span_id): the log format stays the project's, and no log handler
    # is added (Azure Monitor's distro has its own; elsewhere the JSON lines are the logs).
    if "httpx" not in disabled:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument()
    if "redis" not in disabled:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor().instrument()
    if "logging" not in disabled:
        from opentelemetry.instrumentation.logging import LoggingInstrumentor

        LoggingInstrumentor().instrument(set_logging_format=False, inject_trace_context=True,
                                         enable_log_auto_instrumentation=False)


def instrument_sql_engine(engine: Any) -> None:
    """SQL spans (one per statement) for ``engine``, when telemetry is configured.

    The instrumentation is process-wide: the first engine is instrumented, as each service has one.
    """
    if _configured is None or "sqlalchemy" in _configured.settings.disabled_instrumentations:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        # The instrumentation declares SQLAlchemy < 2.1 and would skip 2.1 quietly; the engine events it
        # listens to are unchanged in 2.1 (tests/integration/service_platform/test_telemetry.py checks its spans).
        instrumentor.instrument(engine=engine, enable_commenter=False, skip_dep_check=True)
