"""AMQP 1.0 message bytes: split sections, read the fields the broker needs, and re-annotate on delivery.

A stored message keeps the bytes its sender encoded. On delivery the broker replaces only the header and
message-annotations sections (delivery count, sequence number, lock time, ...) and passes the rest through
untouched, so every property and body type round-trips exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proton import Data, Described, ulong

from .entities import Incoming

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


skip_value = _skip


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


_UNPACK = {0x60: ">H", 0x61: ">h", 0x70: ">I", 0x71: ">i", 0x72: ">f", 0x80: ">Q", 0x81: ">q", 0x82: ">d", 0x83: ">q"}


def _value(buf: bytes, pos: int):
    """Decode the primitive value at ``pos`` (what message headers, properties and performatives hold)."""
    code = buf[pos]
    if code == 0x40:
        return None
    if code in (0xA1, 0xA3):
        n = buf[pos + 1]
        return bytes(buf[pos + 2: pos + 2 + n]).decode("utf-8", "replace")
    if code in (0xB1, 0xB3):
        n = struct.unpack_from(">I", buf, pos + 1)[0]
        return bytes(buf[pos + 5: pos + 5 + n]).decode("utf-8", "replace")
    if code == 0xA0:
        return bytes(buf[pos + 2: pos + 2 + buf[pos + 1]])
    if code == 0xB0:
        n = struct.unpack_from(">I", buf, pos + 1)[0]
        return bytes(buf[pos + 5: pos + 5 + n])
    if code in (0x43, 0x44, 0x42):
        return 0 if code != 0x42 else False
    if code == 0x41:
        return True
    if code in (0x50, 0x52, 0x53):
        return buf[pos + 1]
    if code in (0x51, 0x54, 0x55):
        return struct.unpack_from(">b", buf, pos + 1)[0]
    if code == 0x56:
        return buf[pos + 1] != 0
    if code == 0x98:
        import uuid as _uuid

        return _uuid.UUID(bytes=bytes(buf[pos + 1: pos + 17]))
    fmt = _UNPACK.get(code)
    if fmt is not None:
        return struct.unpack_from(fmt, buf, pos + 1)[0]
    if code == 0x00:  # described value: keep the value
        return _value(buf, _skip(buf, pos + 1))
    raise MalformedMessage(f"unexpected AMQP type code 0x{code:02x} in a message header field")


read_value = _value


def _list_items(buf: bytes, vstart: int, wanted: int) -> list:
    """The first ``wanted`` elements of the list at ``vstart`` (missing ones are None)."""
    code = buf[vstart]
    if code == 0x45:
        return [None] * wanted
    if code == 0xC0:
        count, pos = buf[vstart + 2], vstart + 3
    elif code == 0xD0:
        count, pos = struct.unpack_from(">I", buf, vstart + 5)[0], vstart + 9
    else:
        raise MalformedMessage("a header or properties section must be a list")
    out = []
    for _ in range(min(count, wanted)):
        out.append(_value(buf, pos))
        pos = _skip(buf, pos)
    return out + [None] * (wanted - len(out))


def _map_entries(buf: bytes, vstart: int) -> tuple[int, int, int]:
    """(count of keys and values, index of the first entry, end) of the map at ``vstart``."""
    code = buf[vstart]
    if code == 0xC1:
        return buf[vstart + 2], vstart + 3, vstart + 2 + buf[vstart + 1]
    if code == 0xD1:
        size, count = struct.unpack_from(">II", buf, vstart + 1)
        return count, vstart + 9, vstart + 5 + size
    if code == 0x40:
        return 0, vstart + 1, vstart + 1
    raise MalformedMessage("an annotations section must be a map")


def _millis(value) -> float | None:
    if value is None:
        return None
    return float(value) / 1000.0


def read_incoming(buf: bytes) -> Incoming:
    """The fields the store needs from one encoded message."""
    secs = sections(buf)
    message_id = session_id = None
    ttl = scheduled = None
    has_body = False
    try:
        for code, start, vstart, end in secs:
            if code == HEADER:
                fields = _list_items(buf, vstart, 3)
                if fields[2]:
                    ttl = fields[2] / 1000.0
            elif code == MESSAGE_ANNOTATIONS:
                count, pos, _ = _map_entries(buf, vstart)
                for _ in range(count // 2):
                    key = _value(buf, pos)
                    pos = _skip(buf, pos)
                    if key == "x-opt-scheduled-enqueue-time":
                        scheduled = _millis(_value(buf, pos))
                    pos = _skip(buf, pos)
            elif code == PROPERTIES:
                fields = _list_items(buf, vstart, 11)
                if fields[0] is not None:
                    message_id = str(fields[0])
                if fields[10] is not None:
                    session_id = str(fields[10])
                if ttl is None and fields[8] is not None and fields[9] is not None:
                    ttl = max(0.001, (int(fields[8]) - int(fields[9])) / 1000.0)
            elif code in (DATA, SEQUENCE, VALUE):
                has_body = True
    except (IndexError, struct.error) as exc:
        raise MalformedMessage("truncated AMQP message") from exc
    if not has_body:
        raise MalformedMessage("the message has no body section")
    return Incoming(payload=bytes(buf), message_id=message_id, session_id=session_id, ttl=ttl, scheduled_at=scheduled)


@dataclass(slots=True)
class Parsed:
    """A stored message split for re-annotation."""

    header: list  # durable, priority, ttl (ms or None), first-acquirer
    annotations: bytes  # the sender's message-annotation entries, still encoded
    annotation_count: int  # keys and values in ``annotations``
    rest: bytes  # properties, application properties, body, footer: passed through as sent


_OWN_KEYS = ("x-opt-sequence-number", "x-opt-enqueued-time", "x-opt-locked-until", "x-opt-deadletter-source",
             "x-opt-message-state", "x-opt-lock-token")


def parse_stored(buf: bytes) -> Parsed:
    header: list = [False, 4, None, False]
    entries = b""
    count = 0
    rest_start = 0
    for code, start, vstart, end in sections(buf):
        if code == HEADER:
            fields = _list_items(buf, vstart, 4)
            header = [bool(fields[0]), 4 if fields[1] is None else fields[1], fields[2], bool(fields[3])]
        elif code == DELIVERY_ANNOTATIONS:
            pass
        elif code == MESSAGE_ANNOTATIONS:
            n, pos, map_end = _map_entries(buf, vstart)
            kept = []
            for _ in range(n // 2):
                key_start = pos
                key = _value(buf, pos)
                pos = _skip(buf, _skip(buf, pos))
                if key not in _OWN_KEYS:  # the broker sets these itself
                    kept.append(bytes(buf[key_start:pos]))
            entries = b"".join(kept)
            count = 2 * len(kept)
        else:
            rest_start = start
            break
        rest_start = end
    return Parsed(header, entries, count, bytes(buf[rest_start:]))


def _sym(name: str) -> bytes:
    raw = name.encode()
    return b"\xa3" + bytes([len(raw)]) + raw


def _str(value: str) -> bytes:
    raw = value.encode()
    if len(raw) < 256:
        return b"\xa1" + bytes([len(raw)]) + raw
    return b"\xb1" + struct.pack(">I", len(raw)) + raw


_K_SEQ, _K_ENQ, _K_LOCKED = _sym("x-opt-sequence-number"), _sym("x-opt-enqueued-time"), _sym("x-opt-locked-until")
_K_DLSOURCE, _K_STATE = _sym("x-opt-deadletter-source"), _sym("x-opt-message-state")
_K_SCHEDULED = _sym("x-opt-scheduled-enqueue-time")
_HEADER_PREFIX = b"\x00\x53\x70\xc0"
_MA_PREFIX = b"\x00\x53\x72\xd1"
_LONG, _TS, _INT = struct.Struct(">q"), struct.Struct(">q"), struct.Struct(">i")


def encode_delivery(parsed: Parsed, *, seq: int, enqueued_at: float, delivery_count: int,
                    locked_until: float | None, lock_token: bytes | None, dead_letter_source: str | None,
                    message_state: int, scheduled_at: float | None,
                    dead_letter: tuple[str | None, str | None] | None) -> bytes:
    """The message as the broker delivers it: fresh header and annotations, the sender's other sections.

    ``message_state`` is Service Bus' x-opt-message-state: 0 active, 1 deferred, 2 scheduled.
    """
    durable, priority, ttl, first = parsed.header
    body = (
        (b"\x41" if durable else b"\x42")
        + b"\x50" + bytes([priority & 0xFF])
        + (b"\x40" if ttl is None else b"\x70" + struct.pack(">I", ttl & 0xFFFFFFFF))
        + (b"\x41" if first else b"\x42")
        + b"\x70" + struct.pack(">I", delivery_count & 0xFFFFFFFF)
    )
    header = _HEADER_PREFIX + bytes([len(body) + 1, 5]) + body
    parts = [parsed.annotations, _K_SEQ, b"\x81", _LONG.pack(seq), _K_ENQ, b"\x83", _TS.pack(int(enqueued_at * 1000))]
    count = parsed.annotation_count + 4
    if locked_until is not None:
        parts += [_K_LOCKED, b"\x83", _TS.pack(int(locked_until * 1000))]
        count += 2
    if dead_letter_source is not None:
        parts += [_K_DLSOURCE, _str(dead_letter_source)]
        count += 2
    if message_state:
        parts += [_K_STATE, b"\x71", _INT.pack(message_state)]
        count += 2
    if scheduled_at is not None and b"x-opt-scheduled-enqueue-time" not in parsed.annotations:
        parts += [_K_SCHEDULED, b"\x83", _TS.pack(int(scheduled_at * 1000))]
        count += 2
    entries = b"".join(parts)
    annotations = _MA_PREFIX + struct.pack(">II", len(entries) + 4, count) + entries
    rest = parsed.rest
    if dead_letter is not None:
        rest = _with_dead_letter_properties(rest, *dead_letter)
    return header + annotations + rest


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
