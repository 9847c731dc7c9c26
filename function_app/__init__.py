"""Azure Functions triggers of the order pipeline. ``function_app.app.app`` is the one ``FunctionApp``;
the worker loads it through the root ``functions_entry.py``."""
