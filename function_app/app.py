"""The one ``FunctionApp``: HTTP intake and reads, Service Bus processing and dead-letter handling."""

import azure.functions as func

from function_app import log_context
from function_app.intake import blueprint as intake
from function_app.processing import blueprint as processing

log_context.install()
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(intake)
app.register_functions(processing)
