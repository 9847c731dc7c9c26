"""What the broker remembers about each connection and each link, and the replies sent back on them."""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from enum import Enum
from urllib.parse import urlparse

from proton import Link, Message

from .entities import Consumer
from .transfer_numbering import TransferNumbering

log = logging.getLogger("localbus.amqp")


def entity_path(address: str | None) -> str:
    """``amqps://host:port/orders`` or ``/orders`` or ``orders`` → ``orders``."""
    if not address:
        return ""
    if "://" in address:
        address = urlparse(address).path
    return address.strip("/")


class LinkRole(Enum):
    """What a link is for, from the broker's side."""

    SEND = "send"  # the client sends messages to a queue
    CONSUME = "consume"  # the client receives from a queue, its dead-letter queue or one session
    CBS = "cbs"  # the client puts tokens on $cbs
    CBS_REPLY = "cbs-reply"  # $cbs answers go back on it
    MANAGEMENT = "management"  # requests to an entity's $management node
    MANAGEMENT_REPLY = "management-reply"  # $management answers go back on it


class ConnectionState:
    """One client connection: the resources its tokens grant, its links, and where replies go."""

    __slots__ = ("authorized", "reply_links", "links", "peer", "closed", "numbering")

    def __init__(self, peer: str, numbering: "TransferNumbering | None" = None) -> None:
        self.authorized: set[str] = set()
        self.reply_links: dict[str, Link] = {}
        self.links: set[Link] = set()
        self.peer = peer
        self.closed = False
        self.numbering = numbering

    @property
    def sends_concurrently(self) -> bool:
        """Whether the client put concurrent transfers on one session (their delivery-ids were renumbered)."""
        return self.numbering is not None and self.numbering.renumbered > 0

    def reply(self, node: str, reply_to: str | None, message: Message) -> None:
        """Send the answer to a request made to ``node`` on the link the request named (or the node's)."""
        if self.closed:
            return
        link = self.reply_links.get(entity_path(reply_to).lower()) if reply_to else None
        if link is None:
            link = self.reply_links.get(node.lower())
        if link is None:
            log.warning("no reply link for request", extra={"event": "no-reply-link", "node": node,
                                                            "replyTo": reply_to, "peer": self.peer})
            return
        delivery = link.delivery(uuid.uuid4().bytes)
        link.send(message.encode())
        link.advance()
        if link.snd_settle_mode == Link.SND_SETTLED:
            delivery.settle()


class LinkState:
    """One link: its role, the entity it is attached to and, for receivers, the store's consumer."""

    __slots__ = ("role", "path", "consumer", "waiting_for_session", "deadline", "connection",
                 "requested_session", "receive_and_delete", "recent_sends")

    def __init__(self, role: LinkRole, path: str, connection: ConnectionState) -> None:
        self.role = role
        self.path = path
        self.connection = connection
        self.consumer: Consumer | None = None
        self.waiting_for_session = False
        self.deadline = 0.0
        self.requested_session: str | None = None
        self.receive_and_delete = False
        # Digests of the last messages received on a sending link, with the refusal each got (None: stored).
        self.recent_sends: OrderedDict[bytes, tuple[str, str] | None] = OrderedDict()


def link_state(link: Link) -> LinkState | None:
    return getattr(link, "link_state", None)
