"""Service Bus triggers: process accepted orders; keep dead letters and mark their orders ``Failed``.

Both are ``async`` so that riding out an outage (function_app/retries.py) pauses on the event loop
instead of holding one of the worker's few threads; the order work itself runs in a thread.
"""

from __future__ import annotations

from dataclasses import replace

import azure.functions as func

from function_app.dead_letters import attempt_of, keep_command
from function_app.retries import retrying_transient_errors
from function_app.telemetry import timed
from orders.bootstrap import order_service
from orders.validation import parse_order_message

blueprint = func.Blueprint()


@blueprint.function_name("process_order")
@blueprint.service_bus_queue_trigger(arg_name="message", queue_name="%ORDERS_QUEUE%",
                                     connection="ServiceBusConnection", is_sessions_enabled=True)
@timed
async def process_order(message: func.ServiceBusMessage) -> None:
    # PoisonMessage: retried, then dead-lettered
    command = replace(parse_order_message(message.get_body()), attempt=attempt_of(message))
    await retrying_transient_errors(lambda: order_service().process_order(command),
                                    delivery_count=message.delivery_count, correlation_id=command.correlation_id)


@blueprint.function_name("handle_dead_lettered_order")
@blueprint.service_bus_queue_trigger(arg_name="message", queue_name="%ORDERS_QUEUE%/$DeadLetterQueue",
                                     connection="ServiceBusConnection")
@timed
async def handle_dead_lettered_order(message: func.ServiceBusMessage) -> None:
    command = keep_command(message)  # kept in SQL before the dead-letter queue lets go of it
    await retrying_transient_errors(lambda: order_service().keep_dead_letter(command),
                                    delivery_count=message.delivery_count,
                                    correlation_id=command.dead_letter.correlation_id)
