"""Use cases of the order pipeline: one handler per command or query, dependencies passed as parameters.

Standard library and ``orders.domain`` only; ``orders.bootstrap`` wires the adapters in.
"""

from orders.service_layer.handlers import (
    Accepted,
    IntakeOptions,
    get_order_status,
    list_products,
    mark_order_failed,
    process_order,
    submit_order,
)

__all__ = [
    "Accepted",
    "IntakeOptions",
    "get_order_status",
    "list_products",
    "mark_order_failed",
    "process_order",
    "submit_order",
]
