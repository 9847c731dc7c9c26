"""Entry file the Functions worker imports (app setting PYTHON_SCRIPT_FILE_NAME=functions_entry.py).

A root ``function_app.py`` would clash with the ``function_app/`` package, so the app lives there and
this file only exposes it.
"""

from function_app.app import app

__all__ = ["app"]
