"""Back-off for transient failures inside a Service Bus trigger.

Service Bus redelivers an abandoned message at once, so a database outage would burn through
MaxDeliveryCount in seconds and dead-letter good orders. Waiting before giving the message back (the host
keeps renewing its lock meanwhile) spreads the deliveries over minutes: with the default 10 deliveries,
about 9 minutes of outage are ridden out before an order is dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from orders.domain.errors import TransientError
from service_platform.backoff import exponential_delay

log = logging.getLogger("function_app")

BASE_DELAY_SECONDS = 2.0
MAX_DELAY_SECONDS = 120.0


def backoff_seconds(delivery_count: int | None) -> float:
    return exponential_delay(delivery_count or 0, base=BASE_DELAY_SECONDS, cap=MAX_DELAY_SECONDS)


@contextmanager
def backing_off_on_transient_errors(delivery_count: int | None, correlation_id: str) -> Iterator[None]:
    try:
        yield
    except TransientError as error:
        delay = backoff_seconds(delivery_count)
        log.warning("transient failure, message will be retried in %.0fs: %s", delay, error,
                    extra={"correlationId": correlation_id, "deliveryCount": delivery_count})
        time.sleep(delay)
        raise
