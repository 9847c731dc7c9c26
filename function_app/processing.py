"""Service Bus triggers: process accepted orders; mark dead-lettered ones ``Failed``."""

from __future__ import annotations

import azure.functions as func

from function_app.dead_letters import failed_order_command
from function_app.retries import backing_off_on_transient_errors
from orders.bootstrap import order_service
from orders.validation import parse_order_message

blueprint = func.Blueprint()


@blueprint.function_name("process_order")
@blueprint.service_bus_queue_trigger(arg_name="message", queue_name="%ORDERS_QUEUE%",
                                     connection="ServiceBusConnection", is_sessions_enabled=True)
def process_order(message: func.ServiceBusMessage) -> None:
    command = parse_order_message(message.get_body())  # PoisonMessage: retried, then dead-lettered
    with backing_off_on_transient_errors(message.delivery_count, command.correlation_id):
        order_service().process_order(command)


@blueprint.function_name("handle_dead_lettered_order")
@blueprint.service_bus_queue_trigger(arg_name="message", queue_name="%ORDERS_QUEUE%/$DeadLetterQueue",
                                     connection="ServiceBusConnection")
def handle_dead_lettered_order(message: func.ServiceBusMessage) -> None:
    command = failed_order_command(message)
    if command is None:
        return
    with backing_off_on_transient_errors(message.delivery_count, command.correlation_id):
        order_service().mark_order_failed(command)
