"""Delivery-ids of incoming transfers, numbered the way the broker must see them.

AMQP numbers the transfers a client sends on one session 0, 1, 2, ... (from the ``next-outgoing-id`` of its
``begin``), and Proton's engine ends the connection at the first transfer that breaks the sequence. The
azure-servicebus SDK's pure-Python AMQP layer reads the next id, awaits the socket write and only then
increments it, so concurrent sends or lock renewals on one session hand out the same id twice (a few
duplicates per burst; the count of transfers still matches the counter). Service Bus tolerates that. This
scanner sits between the socket and Proton: it renumbers the first frame of every incoming delivery in
arrival order, and its continuation frames with it. Everything else passes through unchanged, byte for byte.

What a client then sees: the broker's disposition for an id settles every delivery the client labelled with
that id. When a burst shares an id and all of it is stored in one loop turn (the normal case: the frames
arrive together), each message gets its own outcome as if numbered correctly; a rejection of one of them
could be reported for its twin.

Sans-I/O: ``feed(bytes) -> bytes`` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .codec import MalformedMessage, skip_value

PROTOCOL_HEADER = b"AMQP"
BEGIN, TRANSFER, END = 0x11, 0x14, 0x17
_NUMBERED = {BEGIN, TRANSFER, END}
UINT_MAX = 2**32


@dataclass(slots=True)
class _Session:
    next_id: int | None = None  # the id the broker expects for the next new delivery
    open_deliveries: dict[int, int] = field(default_factory=dict)  # handle → id given to its unfinished delivery


def _uint(buf: bytes, pos: int) -> int | None:
    code = buf[pos]
    if code == 0x40:
        return None
    if code == 0x43:
        return 0
    if code == 0x52:
        return buf[pos + 1]
    if code == 0x70:
        return struct.unpack_from(">I", buf, pos + 1)[0]
    raise MalformedMessage(f"expected a uint at offset {pos}, found type 0x{code:02x}")


def _list_bounds(buf: bytes, pos: int) -> tuple[int, int, int] | None:
    """(index of the first item, item count, end) of the list at ``pos``; None when more bytes are needed."""
    if len(buf) < pos + 1:
        return None
    code = buf[pos]
    if code == 0x45:
        return pos + 1, 0, pos + 1
    if code == 0xC0:
        if len(buf) < pos + 3:
            return None
        return pos + 3, buf[pos + 2], pos + 2 + buf[pos + 1]
    if code == 0xD0:
        if len(buf) < pos + 9:
            return None
        size, count = struct.unpack_from(">II", buf, pos + 1)
        return pos + 9, count, pos + 5 + size
    raise MalformedMessage(f"a performative must be a list, found type 0x{code:02x}")


def _descriptor_code(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(performative code, index of its list) for the described value at ``pos``; None if incomplete."""
    if len(buf) < pos + 3:
        return None
    if buf[pos] != 0x00:
        raise MalformedMessage("a frame body must start with a described performative")
    if buf[pos + 1] == 0x53:
        return buf[pos + 2], pos + 3
    if buf[pos + 1] == 0x80:
        if len(buf) < pos + 10:
            return None
        return struct.unpack_from(">Q", buf, pos + 2)[0], pos + 10
    return -1, pos  # a symbolic descriptor: no performative this scanner renumbers


class TransferNumbering:
    """One connection's inbound byte stream, renumbered. ``feed`` returns the bytes to give Proton; it may
    hold back the first bytes of a frame until its performative is complete (a few dozen bytes)."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._pass_through = 0  # bytes of the current frame's payload that go on unchanged
        self._sessions: dict[int, _Session] = {}
        self.renumbered = 0  # transfers whose delivery-id was changed, for the logs

    @property
    def held(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes) -> bytes:
        if not self._pending and self._pass_through >= len(data):
            self._pass_through -= len(data)
            return data
        out = bytearray()
        if self._pass_through:
            take = min(self._pass_through, len(data))
            out += data[:take]
            self._pass_through -= take
            data = data[take:]
        self._pending += data
        while self._pending:
            consumed = self._next(out)
            if consumed == 0:
                break
        return bytes(out)

    def _next(self, out: bytearray) -> int:
        buf = self._pending
        if len(buf) < 8:
            return 0
        if buf[:4] == PROTOCOL_HEADER:
            out += buf[:8]
            del buf[:8]
            return 8
        size, doff, frame_type, channel = struct.unpack_from(">IBBH", buf, 0)
        body = doff * 4
        if frame_type != 0 or size <= body:
            return self._forward(out, size)
        found = _descriptor_code(buf, body)
        if found is None:
            return 0
        code, list_pos = found
        if code not in _NUMBERED:
            return self._forward(out, size)
        bounds = _list_bounds(buf, list_pos)
        if bounds is None:
            return 0
        first, count, end = bounds
        if end > size:
            return self._forward(out, size)  # malformed: Proton refuses it with the right error
        if len(buf) < end:
            return 0
        if code == BEGIN:
            self._begin(channel, buf, first, count)
        elif code == END:
            self._sessions.pop(channel, None)
        else:
            replaced = self._transfer(channel, buf, first, count, end)
            if replaced is not None:
                new_size = size - (end - list_pos) + len(replaced)
                out += struct.pack(">IBBH", new_size, doff, frame_type, channel) + buf[8:list_pos] + replaced
                del buf[:end]
                self._pass_through = size - end
                return self._drain_payload(out, end)
        return self._forward(out, size)

    def _forward(self, out: bytearray, size: int) -> int:
        """Pass the current frame on as it is: what is buffered now, the rest as it arrives."""
        buf = self._pending
        take = min(size, len(buf))
        out += buf[:take]
        del buf[:take]
        self._pass_through = size - take
        return take if take else 0

    def _drain_payload(self, out: bytearray, consumed: int) -> int:
        buf = self._pending
        take = min(self._pass_through, len(buf))
        out += buf[:take]
        del buf[:take]
        self._pass_through -= take
        return consumed

    def _begin(self, channel: int, buf: bytearray, first: int, count: int) -> None:
        # begin: remote-channel, next-outgoing-id, ...
        session = self._sessions[channel] = _Session()
        if count >= 2:
            session.next_id = _uint(buf, skip_value(buf, first))

    def _transfer(self, channel: int, buf: bytearray, first: int, count: int, end: int) -> bytes | None:
        """The performative re-encoded with the broker's delivery-id, or None when it is already right."""
        session = self._sessions.get(channel)
        if session is None or session.next_id is None or count < 2:
            return None
        handle = _uint(buf, first)
        id_pos = skip_value(buf, first)
        id_end = skip_value(buf, id_pos)
        sent_id = _uint(buf, id_pos)
        more = self._more(buf, id_end, count)
        if handle in session.open_deliveries:
            wanted = session.open_deliveries[handle]  # a continuation frame of an unfinished delivery
        elif sent_id is None:
            return None  # not the first frame of a delivery: nothing to number
        else:
            wanted = session.next_id
            session.next_id = (session.next_id + 1) % UINT_MAX
        if more:
            session.open_deliveries[handle] = wanted
        else:
            session.open_deliveries.pop(handle, None)
        if sent_id is None or sent_id == wanted:
            return None
        self.renumbered += 1
        items = bytes(buf[first:id_pos]) + b"\x70" + struct.pack(">I", wanted) + bytes(buf[id_end:end])
        return b"\xd0" + struct.pack(">II", len(items) + 4, count) + items

    @staticmethod
    def _more(buf: bytearray, pos: int, count: int) -> bool:
        # transfer fields after delivery-id: delivery-tag, message-format, settled, more
        if count < 6:
            return False
        for _ in range(3):
            pos = skip_value(buf, pos)
        return buf[pos] == 0x41 or (buf[pos] == 0x56 and buf[pos + 1] == 1)
