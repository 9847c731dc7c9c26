"""Entry file the worker loads; the app lives in a package, as in the project."""

from sample_servicebus.app import app

__all__ = ["app"]
