"""What the store refuses, and how each refusal is spelled on the wire.

Each error carries the Service Bus condition its AMQP answer names and the status code a ``$management``
reply gives it, so no caller keeps its own table of them.
"""

from __future__ import annotations


class StoreError(Exception):
    """A request the store refuses. A bare ``StoreError`` means the request is not supported."""

    condition = "amqp:not-implemented"
    status = 501

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class EntityNotFound(StoreError):
    condition = "amqp:not-found"
    status = 404


class MessageLockLost(StoreError):
    condition = "com.microsoft:message-lock-lost"
    status = 410


class SessionLockLost(StoreError):
    condition = "com.microsoft:session-lock-lost"
    status = 410


class SessionCannotBeLocked(StoreError):
    condition = "com.microsoft:session-cannot-be-locked"
    status = 409


class MessageNotFound(StoreError):
    condition = "com.microsoft:message-not-found"
    status = 404


class InvalidRequest(StoreError):
    condition = "com.microsoft:argument-error"
    status = 400


class QuotaExceeded(StoreError):
    condition = "amqp:resource-limit-exceeded"
    status = 403


class MessageTooLarge(StoreError):
    condition = "amqp:link:message-size-exceeded"
    status = 413
