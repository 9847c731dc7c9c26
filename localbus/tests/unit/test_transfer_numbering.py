"""The delivery-id fix-up on its own: bytes in, bytes out, no sockets."""

from __future__ import annotations

import random
import struct

from proton import Connection, Endpoint, Message, Transport

from localbus.transfer_numbering import TransferNumbering


def frame(channel: int, code: int, items: bytes, count: int, payload: bytes = b"") -> bytes:
    body = b"\x00\x53" + bytes([code]) + b"\xc0" + bytes([len(items) + 1, count]) + items + payload
    return struct.pack(">IBBH", 8 + len(body), 2, 0, channel) + body


def begin(channel: int, remote_channel: int | None = None, next_outgoing_id: int = 0) -> bytes:
    remote = b"\x40" if remote_channel is None else b"\x60" + struct.pack(">H", remote_channel)
    items = remote + b"\x52" + bytes([next_outgoing_id]) + b"\x70\x00\x00\x10\x00" + b"\x70\x00\x00\x10\x00"
    return frame(channel, 0x11, items, 4)


def transfer(delivery_id: int, tag: bytes, payload: bytes, *, more: bool = False) -> bytes:
    items = (b"\x43" + b"\x52" + bytes([delivery_id]) + b"\xa0" + bytes([len(tag)]) + tag + b"\x43" + b"\x42"
             + (b"\x41" if more else b"\x42"))
    return frame(0, 0x14, items, 6, payload)


def disposition(first: int, last: int) -> bytes:
    items = b"\x41" + b"\x52" + bytes([first]) + b"\x52" + bytes([last]) + b"\x41" + b"\x00\x53\x24\x45"
    return frame(0, 0x15, items, 5)


def delivery_ids(stream: bytes) -> list[int]:
    """The delivery-id of every transfer frame in ``stream``."""
    ids, pos = [], 0
    while pos < len(stream):
        size = struct.unpack_from(">I", stream, pos)[0]
        if stream[pos + 10] == 0x14:
            first = pos + 11 + (3 if stream[pos + 11] == 0xC0 else 9)
            id_pos = first + (1 if stream[first] == 0x43 else 2)
            ids.append(stream[id_pos + 1] if stream[id_pos] == 0x52 else struct.unpack_from(">I", stream, id_pos + 1)[0])
        pos += size
    return ids


def disposition_ranges(stream: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos < len(stream):
        size = struct.unpack_from(">I", stream, pos)[0]
        if stream[pos + 10] == 0x15:
            first = pos + 11 + 3 + 1  # list8 header, then role
            values = []
            for _ in range(2):
                if stream[first] == 0x52:
                    values.append(stream[first + 1])
                    first += 2
                else:
                    values.append(struct.unpack_from(">I", stream, first + 1)[0])
                    first += 5
            out.append((values[0], values[1]))
        pos += size
    return out


def test_a_well_numbered_proton_stream_passes_byte_for_byte_in_any_chunking():
    client, server = Transport(Transport.CLIENT), Transport(Transport.SERVER)
    client_connection, server_connection = Connection(), Connection()
    client.bind(client_connection)
    server.bind(server_connection)
    captured = bytearray()

    def pump() -> None:
        for _ in range(100):
            moved = False
            n = min(client.pending(), server.capacity())
            if n > 0:
                data = client.peek(n)
                client.pop(n)
                captured.extend(data)
                server.push(data)
                moved = True
            n = min(server.pending(), client.capacity())
            if n > 0:
                data = server.peek(n)
                server.pop(n)
                client.push(data)
                moved = True
            link = server_connection.link_head(Endpoint.REMOTE_ACTIVE)
            delivery = link.current if link is not None else None
            while delivery is not None and not delivery.partial:
                link.recv(delivery.pending)
                delivery.settle()
                link.advance()
                delivery = link.current
            if not moved:
                return

    client_connection.open()
    session = client_connection.session()
    session.open()
    sender = session.sender("q")
    sender.target.address = "q"
    sender.open()
    pump()
    server_connection.open()
    server_connection.session_head(Endpoint.REMOTE_ACTIVE).open()
    link = server_connection.link_head(Endpoint.REMOTE_ACTIVE)
    link.open()
    link.flow(1000)
    pump()
    rng = random.Random(7)
    for n in range(40):
        sender.delivery(str(n).encode())
        sender.send(Message(body="x" * rng.randint(1, 50_000)).encode())  # multi-frame ones too
        sender.advance()
        pump()
    stream = bytes(captured)
    for _ in range(5):
        numbering, out, pos = TransferNumbering(), bytearray(), 0
        while pos < len(stream):
            step = rng.randint(1, 4000)
            out += numbering.inbound(stream[pos:pos + step])
            pos += step
        assert bytes(out) == stream and numbering.renumbered == 0


def test_repeated_ids_are_renumbered_in_order_and_answers_go_back_under_the_clients_ids():
    numbering = TransferNumbering()
    client = begin(0, None, 0) + transfer(0, b"a", b"one") + transfer(0, b"b", b"two") + transfer(1, b"c", b"three")
    out = numbering.inbound(client)
    assert delivery_ids(out) == [0, 1, 2]
    assert out.endswith(b"three")
    broker = numbering.outbound(begin(0, remote_channel=0) + disposition(0, 2))
    # Broker ids 0..2 are the client's 0, 0, 1: one answer for the client's 0..1.
    assert disposition_ranges(broker) == [(0, 1)]


def test_continuation_frames_follow_their_delivery_and_split_input_is_held_only_briefly():
    numbering = TransferNumbering()
    stream = (begin(0, None, 5) + transfer(5, b"a", b"x" * 100, more=True) + transfer(5, b"a", b"y" * 100)
              + transfer(5, b"b", b"z"))
    out = bytearray()
    for byte in range(len(stream)):
        out += numbering.inbound(stream[byte:byte + 1])
        assert numbering.held < 64
    assert delivery_ids(bytes(out)) == [5, 5, 6]


def test_unreadable_input_is_passed_on_untouched_for_proton_to_refuse():
    numbering = TransferNumbering()
    garbage = b"\x00" * 100
    assert numbering.inbound(garbage) == garbage
    assert numbering.inbound(b"more") == b"more"
