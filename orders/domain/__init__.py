"""The business core of order processing: model, rules, commands, events, ports and errors.

Standard library only (a unit test proves it): the Functions worker, SQLAlchemy, Redis and pydantic all
live in adapters around it.
"""

from orders.domain.commands import MarkOrderFailed, ProcessOrder, SubmitOrder
from orders.domain.errors import DuplicateOrder, OrderNotFound, PoisonMessage, TransientError
from orders.domain.events import OrderStatusChanged
from orders.domain.model import (
    AcceptedRecord,
    OrderLine,
    OrderMessage,
    OrderOutcome,
    OrderRecord,
    OrderStatus,
    PricedLine,
    PricedOrder,
    Product,
    Rejection,
    correlation_id_for,
    merge_quantities,
    out_of_stock,
    price_order,
)

__all__ = [
    "AcceptedRecord",
    "DuplicateOrder",
    "MarkOrderFailed",
    "OrderLine",
    "OrderMessage",
    "OrderNotFound",
    "OrderOutcome",
    "OrderRecord",
    "OrderStatus",
    "OrderStatusChanged",
    "PoisonMessage",
    "PricedLine",
    "PricedOrder",
    "ProcessOrder",
    "Product",
    "Rejection",
    "SubmitOrder",
    "TransientError",
    "correlation_id_for",
    "merge_quantities",
    "out_of_stock",
    "price_order",
]
