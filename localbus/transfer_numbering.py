"""Delivery-ids of a client's transfers, made acceptable to Proton the way Service Bus accepts them.

AMQP numbers the transfers a client sends on one session 0, 1, 2, ... (from the ``next-outgoing-id`` of its
``begin``), and Proton's engine ends the whole connection at the first transfer that breaks the sequence.
The azure-servicebus SDK's pure-Python AMQP layer reads the next id, awaits the socket write and only then
increments it, so concurrent sends, settlements or lock renewals on one session put several transfers on
the wire with the same delivery-id. Service Bus keeps the connection through this, and so does the broker:

* inbound (client → Proton), a transfer whose delivery-id is not the next one is renumbered to the next
  one (its continuation frames with it), and the client's own id is remembered;
* outbound (Proton → client), a disposition that settles renumbered transfers is rewritten to the ids the
  client used, so the client's pending sends are answered under the ids it knows.

Every other frame passes byte for byte; a connection whose client numbers correctly costs a frame-header
look per frame. The SDK also transmits a message again when such a burst confuses its bookkeeping; those
repeats are recognised one level up (``deliveries.Deliveries.receive_send``). Sans-I/O: ``inbound(bytes)``
and ``outbound(bytes)`` return the bytes to pass on.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field

from .codec import MalformedMessage, read_value, skip_value

log = logging.getLogger("localbus.amqp")

PROTOCOL_HEADER = b"AMQP"
BEGIN, TRANSFER, DISPOSITION, END = 0x11, 0x14, 0x15, 0x17
SERIAL = 2**32
MAX_ALIASES = 100_000


@dataclass(slots=True)
class _Session:
    next_id: int | None = None  # the id Proton expects for the next new delivery
    open_deliveries: dict[int, int] = field(default_factory=dict)  # handle → id given to its unfinished delivery
    client_ids: dict[int, int] = field(default_factory=dict)  # renumbered transfers: broker's id → client's id


def _uint(buf: bytes | bytearray, pos: int) -> int | None:
    """An unsigned integer field (any of its encodings), or None for null."""
    value = read_value(buf, pos)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise MalformedMessage(f"expected an unsigned integer at offset {pos}, found {value!r}")
    return value


def _encode_uint(value: int) -> bytes:
    return b"\x70" + struct.pack(">I", value)


def _encode_list(items: bytes, count: int) -> bytes:
    if len(items) + 1 <= 255:
        return b"\xc0" + bytes((len(items) + 1, count)) + items
    return b"\xd0" + struct.pack(">II", len(items) + 4, count) + items


def _performative(buf: bytes | bytearray, body: int) -> tuple[int, int, int, int] | None:
    """(code, index of the first list item, item count, end of the list) of the frame body at ``body``;
    None when more bytes are needed. Symbolic descriptors and non-list bodies give code -1."""
    if len(buf) < body + 3:
        return None
    if buf[body] != 0x00:
        raise MalformedMessage("a frame body must start with a described performative")
    if buf[body + 1] == 0x53:
        code, pos = buf[body + 2], body + 3
    elif buf[body + 1] == 0x80:
        if len(buf) < body + 10:
            return None
        code, pos = struct.unpack_from(">Q", buf, body + 2)[0], body + 10
    else:
        return -1, body, 0, body
    if len(buf) < pos + 1:
        return None
    kind = buf[pos]
    if kind == 0x45:
        return code, pos + 1, 0, pos + 1
    if kind == 0xC0:
        if len(buf) < pos + 3:
            return None
        return code, pos + 3, buf[pos + 2], pos + 2 + buf[pos + 1]
    if kind == 0xD0:
        if len(buf) < pos + 9:
            return None
        size, count = struct.unpack_from(">II", buf, pos + 1)
        return code, pos + 9, count, pos + 5 + size
    raise MalformedMessage(f"a performative must be a list, found type 0x{kind:02x}")


class _FrameStream:
    """Splits a byte stream into AMQP frames; ``rewrite(frame, size, channel, code, first, count, end)`` is asked
    about frames whose performative is in ``codes`` (``frame`` a view starting at the frame) and returns
    replacement bytes for the frame up to ``end`` or None. Unchanged bytes are handed on without copying
    frame by frame: this runs on every byte the broker reads and writes."""

    def __init__(self, codes: set[int], rewrite) -> None:
        self.codes = codes
        self.rewrite = rewrite
        self.pending = b""  # the start of a frame whose header or performative is not complete yet
        self.rest = 0  # bytes of the current frame still to come, passed on unchanged
        self.gave_up = False

    def feed(self, data: bytes) -> bytes:
        if self.gave_up or (not self.pending and self.rest >= len(data)):
            self.rest = max(0, self.rest - len(data))
            return data
        buf = self.pending + data if self.pending else data
        self.pending = b""
        try:
            return self._scan(buf)
        except (MalformedMessage, IndexError, struct.error):
            # Bytes this scanner cannot read: from here on they pass as they came, and Proton (inbound)
            # or the client (outbound) names the protocol error.
            self.gave_up = True
            return buf

    def _scan(self, buf: bytes) -> bytes:
        parts: list[bytes] = []
        length = len(buf)
        pos = min(self.rest, length)
        self.rest -= pos
        flushed = 0  # buf[flushed:pos] is unchanged output not yet put in parts
        view = None
        while length - pos >= 8:
            if buf[pos:pos + 4] == PROTOCOL_HEADER:
                pos += 8
                continue
            size, doff, frame_type, channel = struct.unpack_from(">IBBH", buf, pos)
            if size < 8 or doff < 2:
                raise MalformedMessage(f"not an AMQP frame header (size {size}, data offset {doff})")
            body = doff * 4
            if frame_type == 0 and size > body:
                if length - pos < body + 3:
                    break
                descriptor = buf[pos + body + 1]
                code = buf[pos + body + 2] if descriptor == 0x53 else -1
                if code in self.codes:
                    if view is None:
                        view = memoryview(buf)
                    frame = view[pos:]
                    found = _performative(frame, body)
                    if found is None:
                        break
                    _, first, count, end = found
                    if end <= size:
                        if length - pos < end:
                            break
                        replacement = self.rewrite(frame, size, channel, code, first, count, end)
                        if replacement is not None:
                            parts.append(buf[flushed:pos])
                            parts.append(replacement)
                            flushed = pos + end
            if pos + size > length:
                self.rest = pos + size - length
                pos = length
                break
            pos += size
        parts.append(buf[flushed:pos])
        self.pending = buf[pos:]
        return parts[0] if len(parts) == 1 else b"".join(parts)


class TransferNumbering:
    """One connection's delivery-id fix-up, both directions."""

    def __init__(self, peer: str = "") -> None:
        self.peer = peer
        self._sessions: dict[int, _Session] = {}  # by the client's channel
        self._client_channel: dict[int, int] = {}  # the broker's channel → the client's channel
        self._inbound = _FrameStream({BEGIN, TRANSFER, END}, self._rewrite_inbound)
        self._outbound = _FrameStream({BEGIN, DISPOSITION, END}, self._rewrite_outbound)
        self.renumbered = 0

    @property
    def held(self) -> int:
        return len(self._inbound.pending)

    def inbound(self, data: bytes) -> bytes:
        return self._inbound.feed(data)

    def outbound(self, data: bytes) -> bytes:
        return self._outbound.feed(data)

    # ----- client → Proton ----------------------------------------------------------------------
    def _rewrite_inbound(self, buf, size, channel, code, first, count, end) -> bytes | None:
        if code == BEGIN:
            session = self._sessions[channel] = _Session()
            if count >= 2:  # begin: remote-channel, next-outgoing-id, ...
                session.next_id = _uint(buf, skip_value(buf, first))
            return None
        if code == END:
            self._sessions.pop(channel, None)
            return None
        session = self._sessions.get(channel)
        if session is None or session.next_id is None or count < 2:
            return None
        handle = _uint(buf, first)
        id_pos = skip_value(buf, first)
        id_end = skip_value(buf, id_pos)
        sent_id = _uint(buf, id_pos)
        more = self._more(buf, id_end, count)
        if handle in session.open_deliveries:  # a continuation frame of an unfinished delivery
            wanted = session.open_deliveries[handle] if more else session.open_deliveries.pop(handle)
        elif sent_id is None:
            return None  # no delivery is open on this link: Proton says what is wrong
        else:
            wanted = session.next_id
            session.next_id = (wanted + 1) % SERIAL
            if more:
                session.open_deliveries[handle] = wanted
        if sent_id is None or sent_id == wanted:
            return None
        if wanted not in session.client_ids:
            session.client_ids[wanted] = sent_id
            if len(session.client_ids) > MAX_ALIASES:  # pre-settled transfers get no disposition: forget the oldest
                del session.client_ids[next(iter(session.client_ids))]
            self.renumbered += 1
            if self.renumbered == 1:
                log.debug("delivery-ids of concurrent transfers renumbered",
                          extra={"event": "delivery-ids-renumbered", "peer": self.peer, "deliveryId": sent_id,
                                 "expected": wanted})
        items = bytes(buf[first:id_pos]) + _encode_uint(wanted) + bytes(buf[id_end:end])
        return self._frame(buf, size, end, _encode_list(items, count))

    @staticmethod
    def _more(buf, pos: int, count: int) -> bool:
        # transfer fields after delivery-id: delivery-tag, message-format, settled, more
        if count < 6:
            return False
        for _ in range(3):
            pos = skip_value(buf, pos)
        return read_value(buf, pos) is True

    @staticmethod
    def _frame(buf, size: int, end: int, performative: bytes) -> bytes:
        """A frame like the one in ``buf`` with its performative replaced (the payload follows unchanged)."""
        doff = buf[4]
        descriptor_start = doff * 4
        list_start = descriptor_start + (3 if buf[descriptor_start + 1] == 0x53 else 10)
        new_size = size - (end - list_start) + len(performative)
        return struct.pack(">I", new_size) + bytes(buf[4:list_start]) + performative

    # ----- Proton → client ----------------------------------------------------------------------
    def _rewrite_outbound(self, buf, size, channel, code, first, count, end) -> bytes | None:
        if code == BEGIN:
            remote = _uint(buf, first) if count >= 1 else None  # begin: remote-channel, ...
            if remote is not None:
                self._client_channel[channel] = remote
            return None
        if code == END:
            self._client_channel.pop(channel, None)
            return None
        # disposition: role, first, last, settled, state, batchable
        if count < 2 or read_value(buf, first) is not True:  # only the broker's answers as receiver (role true)
            return None
        session = self._sessions.get(self._client_channel.get(channel, -1))
        if session is None or not session.client_ids:
            return None
        first_pos = skip_value(buf, first)
        last_pos = skip_value(buf, first_pos)
        range_first = _uint(buf, first_pos)
        range_last = _uint(buf, last_pos) if count >= 3 else None
        tail_pos = skip_value(buf, last_pos) if count >= 3 else last_pos
        settled = count >= 4 and read_value(buf, tail_pos) is True
        last = range_first if range_last is None else range_last
        span = range(range_first, last + 1) if last >= range_first else range(range_first, range_first + 1)
        if not any(i in session.client_ids for i in span):
            return None
        ids = sorted({session.client_ids.pop(i, i) if settled else session.client_ids.get(i, i) for i in span})
        tail = bytes(buf[tail_pos:end])
        frames = bytearray()
        start = previous = ids[0]
        for value in ids[1:] + [None]:
            if value is not None and value == previous + 1:
                previous = value
                continue
            items = b"\x41" + _encode_uint(start) + _encode_uint(previous) + tail
            frames += self._frame(buf, size, end, _encode_list(items, max(count, 3)))
            if value is not None:
                start = previous = value
        # A disposition has no payload, so the frames are whole: nothing of the original follows them.
        return bytes(frames)
