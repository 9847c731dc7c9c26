"""Deliveries both ways: messages handed to consumers (encoded with their broker properties), messages
received from senders, and the settlements receivers send back."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid

import cproton
from proton import Delivery, Link, symbol

from . import codec
from .actions import AcceptSend, AfterCommit, EchoSettlement, echo, reject
from .entities import Consumer, Outcome, StoredMessage
from .errors import StoreError
from .link_state import LinkRole, LinkState
from .store import Store

log = logging.getLogger("localbus.amqp")

PARSED_CACHE_LIMIT = 20_000
RECENT_SENDS = 1000


def delivery_tag(delivery: Delivery) -> bytes:
    """The raw tag bytes (proton-python would decode them as UTF-8 text)."""
    raw = cproton.lib.pn_delivery_tag(delivery._impl)
    return bytes(cproton.ffi.unpack(raw.start, raw.size))


def _dead_letter_fields(delivery: Delivery) -> tuple[str | None, str | None]:
    cond = delivery.remote.condition
    if cond is None:
        return None, None
    info = cond.info or {}
    reason = info.get("DeadLetterReason", info.get(symbol("DeadLetterReason")))
    description = info.get("DeadLetterErrorDescription", info.get(symbol("DeadLetterErrorDescription")))
    return reason, description if description is not None else cond.description


def _outcome(delivery: Delivery) -> Outcome | None:
    state = delivery.remote_state
    if state == Delivery.ACCEPTED:
        return Outcome.COMPLETE
    if state == Delivery.MODIFIED:
        return Outcome.DEFER if delivery.remote.undeliverable else Outcome.ABANDON
    if state == Delivery.REJECTED:
        return Outcome.DEAD_LETTER
    if state == Delivery.RELEASED:
        return Outcome.RELEASE
    return None


class Deliveries:
    """Moves messages between the store and links. Answers that must wait for a commit come back as
    actions for the server to run after it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Decoding a stored message's sections is the costly part of a delivery; a redelivery reuses it.
        self._parsed: dict[tuple[str, int], codec.Parsed] = {}

    # ----- to consumers -------------------------------------------------------------------------
    def encode(self, m: StoredMessage, locked_until: float | None) -> bytes:
        dead_letter = (m.dead_letter_reason, m.dead_letter_description) if m.dead_lettered else None
        return codec.encode_delivery(
            self._parsed_sections(m), seq=m.seq, enqueued_at=m.enqueued_at, delivery_count=m.delivery_count,
            locked_until=locked_until, lock_token=None,
            dead_letter_source=m.dead_letter_source if m.dead_lettered else None,
            message_state=int(m.state), scheduled_at=m.scheduled_at, dead_letter=dead_letter,
        )

    def _parsed_sections(self, m: StoredMessage) -> codec.Parsed:
        key = (m.queue, m.seq)
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = codec.parse_stored(m.payload)
            if len(self._parsed) > PARSED_CACHE_LIMIT:
                self._parsed.clear()
            self._parsed[key] = parsed
        return parsed

    def _forget(self, m: StoredMessage) -> None:
        self._parsed.pop((m.queue, m.seq), None)

    def pump(self, link: Link, consumer: Consumer, now: float) -> None:
        """Hand ``consumer`` as many ready messages as its link has credit for."""
        store = self.store
        credit = link.credit
        while credit > 0 and store.has_ready(consumer):
            m = store.next_message(consumer, now)
            if m is None:
                break
            self._deliver(link, consumer, m)
            credit -= 1
        if link.drain_mode:
            link.drained()

    def _deliver(self, link: Link, consumer: Consumer, m: StoredMessage) -> None:
        if consumer.receive_and_delete:
            body = self.encode(m, None)
            self._forget(m)
            delivery = link.delivery(uuid.uuid4().bytes)
            link.send(body)
            delivery.settle()
        else:
            locked_until = None if consumer.session is not None else m.locked_until
            body = self.encode(m, locked_until)
            link.delivery(m.lock_token)
            link.send(body)
        link.advance()

    # ----- from senders -------------------------------------------------------------------------
    def receive_send(self, delivery: Delivery, link_state: LinkState, data: bytes) -> AfterCommit | None:
        """Store a sent message (or batch); its acknowledgement waits for the commit.

        A client that sends concurrently on one session (see ``transfer_numbering``) may transmit the same
        message twice while its bookkeeping is confused: on such a connection, the very same bytes again on
        the same link within the last ``RECENT_SENDS`` transfers are that message again, answered like the
        first and not stored twice. (The SDK gives every message its own message-id, so two different
        messages never have the same bytes.)
        """
        # Remembered for every send (the first of a repeated pair arrives before the race shows), looked
        # up only on connections where it showed.
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if link_state.connection.sends_concurrently:
            if digest in link_state.recent_sends:
                refusal = link_state.recent_sends[digest]
                log.debug("repeated transmission answered like the first", extra={
                    "event": "repeated-transfer", "queue": link_state.path, "peer": link_state.connection.peer})
                if refusal is not None:
                    reject(delivery, *refusal)
                    return None
                return self._acknowledge(delivery)
        try:
            incoming = [codec.read_incoming(part) for part in codec.split_batch(data)]
            self.store.enqueue(link_state.path, incoming, time.time())
        except codec.MalformedMessage as exc:
            log.warning("malformed message refused", extra={"event": "malformed-message", "queue": link_state.path,
                                                            "description": str(exc)})
            reject(delivery, "amqp:decode-error", f"The message could not be decoded: {exc}")
            return None
        except StoreError as exc:
            log.info("send refused", extra={"event": "send-refused", "queue": link_state.path,
                                            "condition": exc.condition, "description": exc.description})
            self._remember(link_state, digest, (exc.condition, exc.description))
            reject(delivery, exc.condition, exc.description)
            return None
        self._remember(link_state, digest, None)
        return self._acknowledge(delivery)

    @staticmethod
    def _remember(link_state: LinkState, digest: bytes, refusal: tuple[str, str] | None) -> None:
        recent = link_state.recent_sends
        recent[digest] = refusal
        if len(recent) > RECENT_SENDS:
            recent.popitem(last=False)

    @staticmethod
    def _acknowledge(delivery: Delivery) -> AfterCommit | None:
        if delivery.settled:  # sent pre-settled: the sender wants no answer
            delivery.settle()
            return None
        return AcceptSend(delivery)

    # ----- settlements from receivers -----------------------------------------------------------
    def settle(self, delivery: Delivery, link_state: LinkState | None) -> AfterCommit | None:
        """Apply a receiver's settlement. Completions are echoed at once (committed lazily: one lost in a
        crash only means a redelivery); dead-letters, deferrals and abandons once they are durable."""
        outcome = _outcome(delivery)
        if (link_state is None or link_state.role is not LinkRole.CONSUME or outcome is None
                or link_state.receive_and_delete):
            if delivery.settled:
                delivery.settle()
            return None
        reason = description = None
        if outcome is Outcome.DEAD_LETTER:
            reason, description = _dead_letter_fields(delivery)
        try:
            m = self.store.settle(delivery_tag(delivery), outcome, time.time(), reason=reason, description=description)
        except StoreError as exc:
            if delivery.settled:
                delivery.settle()
            else:
                reject(delivery, exc.condition, exc.description)
            return None
        if outcome is Outcome.COMPLETE or outcome is Outcome.DEAD_LETTER:
            self._forget(m)
        if delivery.settled:
            delivery.settle()
            return None
        if outcome is Outcome.COMPLETE or outcome is Outcome.RELEASE:
            echo(delivery, delivery.remote_state)
            return None
        return EchoSettlement(delivery, delivery.remote_state)
