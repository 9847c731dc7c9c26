"""Message bytes: what the broker reads from a send and what it writes on delivery, checked with Proton's decoder."""

from __future__ import annotations

import uuid

import pytest
from proton import Message, symbol, timestamp

from localbus import codec


def _encoded(**kw) -> bytes:
    return Message(**kw).encode()


def test_read_incoming_takes_ids_ttl_and_schedule():
    raw = _encoded(id="m-1", group_id="customer-7", ttl=30.0, body="hi",
                   annotations={symbol("x-opt-scheduled-enqueue-time"): timestamp(1_900_000_000_000)})
    inc = codec.read_incoming(raw)
    assert (inc.message_id, inc.session_id, inc.ttl, inc.scheduled_at) == ("m-1", "customer-7", 30.0, 1_900_000_000.0)
    assert inc.payload == raw
    uid = uuid.uuid4()
    assert codec.read_incoming(_encoded(id=uid, body=b"x")).message_id == str(uid)


def test_batch_envelope_is_split_into_its_messages():
    inner = [_encoded(id=f"m{i}", body=f"b{i}") for i in range(3)]
    # The SDK's batch: one transfer whose data sections each hold a whole encoded message.
    envelope = b"".join(b"\x00\x53\x75\xb0" + len(m).to_bytes(4, "big") + m for m in inner)
    assert codec.split_batch(envelope) == inner
    single = _encoded(body=b"\x00\x53\x70 looks like a section but is one plain message")
    assert codec.split_batch(single) == [single]


def test_delivery_rewrites_header_and_annotations_and_keeps_the_rest():
    raw = _encoded(id="m-1", correlation_id="c-1", subject="s", content_type="application/json", ttl=60.0,
                   properties={"schemaVersion": 1, "long": "x" * 300}, body=b'{"a": 1}',
                   annotations={symbol("x-opt-partition-key"): "p", symbol("x-opt-sequence-number"): 999})
    out = codec.encode_delivery(codec.parse_stored(raw), seq=42, enqueued_at=1_700_000_000.5, delivery_count=3,
                                locked_until=1_700_000_060.0, lock_token=None, dead_letter_source="orders",
                                message_state=1, scheduled_at=None, dead_letter=("Bad", "why"))
    m = Message()
    m.decode(out)
    assert m.delivery_count == 3 and m.ttl == 60.0
    assert m.id == "m-1" and m.correlation_id == "c-1" and m.subject == "s" and m.body == b'{"a": 1}'
    assert m.annotations[symbol("x-opt-sequence-number")] == 42  # the broker's, not the sender's
    assert m.annotations[symbol("x-opt-partition-key")] == "p"
    assert m.annotations[symbol("x-opt-enqueued-time")] == 1_700_000_000_500
    assert m.annotations[symbol("x-opt-locked-until")] == 1_700_000_060_000
    assert m.annotations[symbol("x-opt-deadletter-source")] == "orders"
    assert m.annotations[symbol("x-opt-message-state")] == 1
    assert m.properties == {"schemaVersion": 1, "long": "x" * 300, "DeadLetterReason": "Bad",
                            "DeadLetterErrorDescription": "why"}


@pytest.mark.parametrize("junk", [b"", b"\x00", b"\x00\x53\x77\xb0\xff\xff\xff\xff", b"\x00\x53\x73\xc0\x05\x02\xff"])
def test_malformed_messages_are_refused(junk):
    with pytest.raises(codec.MalformedMessage):
        codec.read_incoming(junk)
