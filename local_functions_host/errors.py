"""The one exception type the host raises for problems a user has to fix before it can start."""

from __future__ import annotations


class HostConfigurationError(Exception):
    """The app, its settings or host.json cannot be run as they are; the message says what to change."""
