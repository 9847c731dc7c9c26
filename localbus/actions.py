"""Answers that must wait for the journal's commit: a send is acknowledged, a settlement echoed, a
management reply sent only once what it reports is durable. The server runs them in order after each
group commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from proton import Condition, Delivery, Message, symbol

from .link_state import ConnectionState

VENDOR = "com.microsoft:"  # the prefix of Service Bus' own AMQP symbols


def condition(name: str, description: str | None) -> Condition:
    # The SDK indexes the error's info field, so it must be present (a null would be trimmed away).
    return Condition(name, description, {symbol(VENDOR + "tracking-id"): str(uuid.uuid4())})


def accept(delivery: Delivery) -> None:
    delivery.update(Delivery.ACCEPTED)
    delivery.settle()


def reject(delivery: Delivery, condition_name: str, description: str) -> None:
    delivery.local.condition = condition(condition_name, description)
    delivery.update(Delivery.REJECTED)
    delivery.settle()


def echo(delivery: Delivery, state: int) -> None:
    """Settle with the outcome the client asked for."""
    delivery.update(state)
    delivery.settle()


@dataclass(slots=True)
class AcceptSend:
    """A received message is stored: tell its sender."""

    delivery: Delivery

    def run(self) -> None:
        accept(self.delivery)


@dataclass(slots=True)
class EchoSettlement:
    """A dead-letter, deferral or abandon is stored: confirm it to the receiver."""

    delivery: Delivery
    state: int

    def run(self) -> None:
        echo(self.delivery, self.state)


@dataclass(slots=True)
class SendReply:
    """The answer to a ``$management`` request."""

    connection: ConnectionState
    node: str
    reply_to: str | None
    message: Message

    def run(self) -> None:
        self.connection.reply(self.node, self.reply_to, self.message)


AfterCommit = AcceptSend | EchoSettlement | SendReply
