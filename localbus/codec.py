"""AMQP 1.0 message bytes: split sections, read the fields the broker needs, and re-annotate on delivery.

A stored message keeps the bytes its sender encoded. On delivery the broker replaces only the header and
message-annotations sections (delivery count, sequence number, lock time, ...) and passes the rest through
untouched, so every property and body type round-trips exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proton import Data, Described, symbol, timestamp, ulong

from .store import Incoming

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES = 0x70, 0x71, 0x72, 0x73, 0x74
DATA, SEQUENCE, VALUE, FOOTER = 0x75, 0x76, 0x77, 0x78

_FIXED = {0x40: 0, 0x41: 0, 0x42: 0, 0x43: 0, 0x44: 0, 0x45: 0}
_FIXED.update({c: 1 for c in (0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56)})
_FIXED.update({0x60: 2, 0x61: 2})
_FIXED.update({c: 4 for c in (0x70, 0x71, 0x72, 0x73, 0x74)})
_FIXED.update({c: 8 for c in (0x80, 0x81, 0x82, 0x83, 0x84)})
_FIXED.update({0x94: 16, 0x98: 16})
_VAR1 = {0xA0, 0xA1, 0xA3, 0xC0, 0xC1, 0xE0}
_VAR4 = {0xB0, 0xB1, 0xB3, 0xD0, 0xD1, 0xF0}

SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")


class MalformedMessage(ValueError):
    """The bytes are not a valid AMQP message."""


def _skip(buf: bytes, pos: int) -> int:
    """Index just past the encoded value that starts at ``pos``."""
    code = buf[pos]
    if code == 0x00:
        return _skip(buf, _skip(buf, pos + 1))
    width = _FIXED.get(code)
    if width is not None:
        end = pos + 1 + width
    elif code in _VAR1:
        end = pos + 2 + buf[pos + 1]
    elif code in _VAR4:
        end = pos + 5 + struct.unpack_from(">I", buf, pos + 1)[0]
    else:
        raise MalformedMessage(f"unknown AMQP type code 0x{code:02x} at offset {pos}")
    if end > len(buf):
        raise MalformedMessage(f"value at offset {pos} runs past the end of the message")
    return end


def _descriptor(buf: bytes, pos: int) -> tuple[int, int]:
    """(section code, index of its value) for a section starting at ``pos``."""
    if buf[pos] != 0x00:
        raise MalformedMessage(f"expected a described section at offset {pos}")
    code = buf[pos + 1]
    if code == 0x53:
        return buf[pos + 2], pos + 3
    if code == 0x80:
        return struct.unpack_from(">Q", buf, pos + 2)[0], pos + 10
    if code == 0xA3:  # symbolic descriptor, e.g. amqp:data:binary
        name = bytes(buf[pos + 3: pos + 3 + buf[pos + 2]])
        codes = {b"amqp:header:list": HEADER, b"amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
                 b"amqp:message-annotations:map": MESSAGE_ANNOTATIONS, b"amqp:properties:list": PROPERTIES,
                 b"amqp:application-properties:map": APPLICATION_PROPERTIES, b"amqp:data:binary": DATA,
                 b"amqp:amqp-sequence:list": SEQUENCE, b"amqp:amqp-value:*": VALUE, b"amqp:footer:map": FOOTER}
        return codes.get(name, -1), pos + 3 + buf[pos + 2]
    raise MalformedMessage(f"unsupported section descriptor at offset {pos}")


def sections(buf: bytes) -> list[tuple[int, int, int, int]]:
    """[(code, start, value_start, end)] of every section in ``buf``."""
    out = []
    pos = 0
    n = len(buf)
    try:
        while pos < n:
            code, vstart = _descriptor(buf, pos)
            end = _skip(buf, vstart)
            out.append((code, pos, vstart, end))
            pos = end
    except (IndexError, struct.error) as exc:
        raise MalformedMessage("truncated AMQP message") from exc
    return out


def _decode_value(buf: bytes):
    d = Data()
    d.decode(buf)
    d.rewind()
    d.next()
    return d.get_object()


def _data_payload(buf: bytes, vstart: int) -> bytes:
    code = buf[vstart]
    if code == 0xA0:
        return buf[vstart + 2: vstart + 2 + buf[vstart + 1]]
    if code == 0xB0:
        size = struct.unpack_from(">I", buf, vstart + 1)[0]
        return buf[vstart + 5: vstart + 5 + size]
    raise MalformedMessage("a data section must hold binary")


def is_batch(buf: bytes, secs: list[tuple[int, int, int, int]]) -> bool:
    """A batch envelope: its body is only data sections, each a complete encoded message."""
    body = [s for s in secs if s[0] in (DATA, SEQUENCE, VALUE)]
    if not body or any(s[0] != DATA for s in body):
        return False
    for _, _, vstart, _ in body:
        inner = _data_payload(buf, vstart)
        if len(inner) < 3 or inner[0] != 0x00 or inner[1] != 0x53 or not HEADER <= inner[2] <= FOOTER:
            return False
    return True


def split_batch(buf: bytes) -> list[bytes]:
    """The messages of a transfer: one, or each of a batch envelope's."""
    secs = sections(buf)
    if is_batch(buf, secs):
        return [bytes(_data_payload(buf, s[2])) for s in secs if s[0] == DATA]
    return [buf]


def _millis(value) -> float | None:
    if value is None:
        return None
    return float(value) / 1000.0


def read_incoming(buf: bytes) -> Incoming:
    """The fields the store needs from one encoded message."""
    secs = sections(buf)
    message_id = session_id = None
    ttl = scheduled = None
    if not any(s[0] in (DATA, SEQUENCE, VALUE) for s in secs):
        raise MalformedMessage("the message has no body section")
    for code, start, vstart, end in secs:
        if code == HEADER:
            fields = _decode_value(buf[start:end]).value
            if len(fields) > 2 and fields[2] is not None and fields[2] > 0:
                ttl = fields[2] / 1000.0
        elif code == MESSAGE_ANNOTATIONS:
            annotations = _decode_value(buf[start:end]).value or {}
            scheduled = _millis(annotations.get(SCHEDULED_ENQUEUE_TIME))
        elif code == PROPERTIES:
            fields = _decode_value(buf[start:end]).value
            if fields:
                if fields[0] is not None:
                    message_id = str(fields[0])
                if len(fields) > 10 and fields[10] is not None:
                    session_id = str(fields[10])
                if len(fields) > 8 and fields[8] is not None and ttl is None:
                    created = fields[9] if len(fields) > 9 and fields[9] is not None else None
                    if created is not None:
                        ttl = max(0.001, (int(fields[8]) - int(created)) / 1000.0)
    return Incoming(payload=bytes(buf), message_id=message_id, session_id=session_id, ttl=ttl, scheduled_at=scheduled)


@dataclass(slots=True)
class Parsed:
    """A stored message split for re-annotation."""

    header: list
    annotations: dict
    rest: bytes


def parse_stored(buf: bytes) -> Parsed:
    header: list = []
    annotations: dict = {}
    rest_start = 0
    for code, start, vstart, end in sections(buf):
        if code == HEADER:
            header = list(_decode_value(buf[start:end]).value or [])
        elif code == DELIVERY_ANNOTATIONS:
            pass
        elif code == MESSAGE_ANNOTATIONS:
            annotations = dict(_decode_value(buf[start:end]).value or {})
        else:
            rest_start = start
            break
        rest_start = end
    return Parsed(header, annotations, bytes(buf[rest_start:]))


_SEQ = symbol("x-opt-sequence-number")
_ENQ = symbol("x-opt-enqueued-time")
_LOCKED = symbol("x-opt-locked-until")
_DLSOURCE = symbol("x-opt-deadletter-source")
_STATE = symbol("x-opt-message-state")
_LOCK_TOKEN = symbol("x-opt-lock-token")


def _ts(seconds: float) -> timestamp:
    return timestamp(int(seconds * 1000))


def encode_delivery(parsed: Parsed, *, seq: int, enqueued_at: float, delivery_count: int,
                    locked_until: float | None, lock_token: bytes | None, dead_letter_source: str | None,
                    deferred: bool, scheduled_at: float | None, dead_letter: tuple[str | None, str | None] | None
                    ) -> bytes:
    """The message as the broker delivers it: fresh header and annotations, the sender's other sections."""
    header = list(parsed.header) + [None] * (5 - len(parsed.header))
    header[4] = delivery_count
    for i, default in ((0, False), (1, 4), (3, False)):
        if header[i] is None:
            header[i] = default
    annotations = dict(parsed.annotations)
    annotations[_SEQ] = seq
    annotations[_ENQ] = _ts(enqueued_at)
    if locked_until is not None:
        annotations[_LOCKED] = _ts(locked_until)
    if lock_token is not None:
        import uuid as _uuid
        annotations[_LOCK_TOKEN] = _uuid.UUID(bytes_le=lock_token)
    if dead_letter_source is not None:
        annotations[_DLSOURCE] = dead_letter_source
    if deferred:
        annotations[_STATE] = 1
    if scheduled_at is not None:
        annotations[SCHEDULED_ENQUEUE_TIME] = _ts(scheduled_at)
    d = Data()
    d.put_described()
    d.enter()
    d.put_ulong(HEADER)
    d.put_list()
    d.enter()
    d.put_bool(bool(header[0]))
    d.put_ubyte(int(header[1]))
    if header[2] is None:
        d.put_null()
    else:
        d.put_uint(int(header[2]))
    d.put_bool(bool(header[3]))
    d.put_uint(int(header[4]))
    d.exit()
    d.exit()
    d.put_object(Described(ulong(MESSAGE_ANNOTATIONS), annotations))
    head = d.encode()
    rest = parsed.rest
    if dead_letter is not None:
        rest = _with_dead_letter_properties(rest, *dead_letter)
    return head + rest


def _with_dead_letter_properties(rest: bytes, reason: str | None, description: str | None) -> bytes:
    """Add DeadLetterReason / DeadLetterErrorDescription to the application properties."""
    secs = sections(rest)
    props: dict = {}
    before = after = None
    for code, start, vstart, end in secs:
        if code == APPLICATION_PROPERTIES:
            props = dict(_decode_value(rest[start:end]).value or {})
            before, after = start, end
            break
    if reason is not None:
        props["DeadLetterReason"] = reason
    if description is not None:
        props["DeadLetterErrorDescription"] = description
    d = Data()
    d.put_object(Described(ulong(APPLICATION_PROPERTIES), props))
    encoded = d.encode()
    if before is not None:
        return rest[:before] + encoded + rest[after:]
    # No application properties yet: they go after the properties section, before the body.
    insert_at = 0
    for code, start, vstart, end in secs:
        if code == PROPERTIES:
            insert_at = end
    return rest[:insert_at] + encoded + rest[insert_at:]
