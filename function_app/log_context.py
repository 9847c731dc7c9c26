"""Keeps the CorrelationId in the text of every log line of the app.

The Python worker forwards only a record's message to the Functions host (and so to Application
Insights), not the ``extra`` fields the handlers attach; without this the CorrelationId would be lost in
Azure. Locally, the JSON log lines carry it both as a field and in the message.
"""

from __future__ import annotations

import logging

APP_LOGGERS = ("orders", "function_app")


class CorrelationIdInMessage(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        correlation_id = getattr(record, "correlationId", None)
        if correlation_id and not getattr(record, "_correlation_in_message", False):
            record.msg = f"{record.msg} [correlationId={correlation_id}]"
            record._correlation_in_message = True
        return True


def install() -> None:
    """Attach the filter to every logger of the app's modules (call it once they are imported).

    A logger's filters see only the records logged on that logger, not its children's, hence each one.
    Idempotent: importing the app twice adds nothing.
    """
    names = [name for name in logging.root.manager.loggerDict if name.split(".")[0] in APP_LOGGERS]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, CorrelationIdInMessage) for existing in logger.filters):
            logger.addFilter(CorrelationIdInMessage())
