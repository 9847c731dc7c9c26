"""The one ``FunctionApp``: HTTP intake, status, products, health and the OpenAPI document; Service Bus processing
and dead letters; the operators' dead-letter routes."""

import azure.functions as func

from function_app import log_context
from function_app.dead_letter_operations import blueprint as dead_letter_operations
from function_app.health import blueprint as health
from function_app.intake import blueprint as intake
from function_app.openapi import blueprint as openapi
from function_app.processing import blueprint as processing
from function_app.products import blueprint as products
from function_app.status import blueprint as status

log_context.install()
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in (intake, status, products, health, openapi, processing, dead_letter_operations):
    app.register_functions(blueprint)
