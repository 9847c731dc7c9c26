"""``OrderMetrics``: the order pipeline's OpenTelemetry instruments.

The instruments come from the global meter provider, so they cost next to nothing until
``service_platform.telemetry`` configures one, and export through whichever exporters it chose.
Queue and dead-letter depths are not here: Service Bus reports them (``ActiveMessages``,
``DeadletteredMessages``), and the local broker's ``/queues`` does.
"""

from __future__ import annotations

from datetime import datetime

from opentelemetry import metrics

from orders.domain.model import OrderOutcome, OrderStatus

# Seconds; orders take from a few milliseconds to the minutes of a SQL outage ridden out.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class OrderMetrics:
    def __init__(self, meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter("orders")
        self._accepted = meter.create_counter("orders.accepted", unit="{order}",
                                              description="Orders the intake accepted (202)")
        self._finished = {
            status: meter.create_counter(f"orders.{status.value.lower()}", unit="{order}",
                                         description=f"Orders that ended {status.value}")
            for status in (OrderStatus.COMPLETED, OrderStatus.REJECTED, OrderStatus.FAILED)
        }
        self._latency = meter.create_histogram(
            "orders.latency", unit="s", description="From acceptance to the order's final status",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS)
        self._dead_lettered = meter.create_counter("orders.dead_lettered", unit="{message}",
                                                   description="Dead letters kept from the orders queue")
        self._refused = meter.create_counter(
            "orders.intake.refused", unit="{request}",
            description="Orders the intake refused for load: 429 (a limit) or 503 (a dependency down)")
        self._invocations = meter.create_histogram(
            "orders.invocation.duration", unit="s", description="Duration of one function invocation",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS)

    def accepted(self) -> None:
        self._accepted.add(1)

    def finished(self, outcome: OrderOutcome, accepted_at: datetime | None) -> None:
        counter = self._finished.get(outcome.status)
        if counter is None:
            return
        counter.add(1)
        if accepted_at is not None:
            self._latency.record(max((outcome.updated_at - accepted_at).total_seconds(), 0.0),
                                 {"orders.status": outcome.status.value})

    def dead_lettered(self, reason: str | None) -> None:
        self._dead_lettered.add(1, {"orders.dead_letter_reason": reason or "unknown"})

    def refused(self, status_code: int) -> None:
        self._refused.add(1, {"http.response.status_code": status_code})

    def invocation(self, function: str, seconds: float, *, succeeded: bool) -> None:
        self._invocations.record(seconds, {"faas.name": function, "outcome": "Succeeded" if succeeded else "Failed"})
