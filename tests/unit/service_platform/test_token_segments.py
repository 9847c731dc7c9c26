"""The validator decodes a token's segments with its own compiled check instead of PyJWT's per-character loop.
It must accept exactly what PyJWT accepts and decode it the same: a looser check would let through tokens
PyJWT was fixed to refuse (junk characters, extra padding, non-canonical last characters)."""

from __future__ import annotations

import base64
import random

import jwt
import pytest
from jwt.exceptions import DecodeError

from service_platform import access_tokens

CRAFTED = [
    b"", b"=", b"==", b"===", b"A", b"AA", b"AAA", b"AAAA", b"AB", b"AB==", b"AB=", b"ABC=", b"ABC==",
    b"ABCD=", b"ABCD==", b"AQ", b"AR", b"AQ==", b"AR==", b"!!!!", b"e30", b"e30=", b"e3=0", b"e30 ", b" e30",
    b"e+0", b"e/0", b"eyJhbGciOiJSUzI1NiJ9", b"eyJhbGciOiJSUzI1NiJ9==", b"eyJhbGciOiJSUzI1NiJ9\n",
    b"\xc3\xa9AA", b"A\x00AA", b"_-_-", b"_-_-=", b"____", b"-_-",
]


def outcome(decode, segment: bytes) -> bytes | str:
    try:
        return decode(segment, "payload")
    except DecodeError as error:
        return f"refused: {error}"


def random_segments(count: int) -> list[bytes]:
    rng = random.Random(20261202)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    junk = b"=+/!. \n\x00"
    segments = []
    for _ in range(count):
        length = rng.randrange(0, 14)
        characters = [alphabet[rng.randrange(len(alphabet))] for _ in range(length)]
        if rng.random() < 0.4:
            characters.insert(rng.randrange(length + 1), junk[rng.randrange(len(junk))])
        if rng.random() < 0.4:
            characters += b"=" * rng.randrange(1, 4)
        segments.append(bytes(characters))
    return segments + [base64.urlsafe_b64encode(rng.randbytes(n)) for n in range(40)]


@pytest.mark.parametrize("segment", CRAFTED, ids=repr)
def test_a_crafted_segment_is_accepted_and_decoded_exactly_as_pyjwt_does(segment: bytes) -> None:
    assert outcome(access_tokens._decode_segment, segment) == outcome(jwt.PyJWS._decode_base64url_segment, segment)


def test_random_segments_are_accepted_and_decoded_exactly_as_pyjwt_does() -> None:
    segments = random_segments(5000)
    differ = [segment for segment in segments if outcome(access_tokens._decode_segment, segment)
              != outcome(jwt.PyJWS._decode_base64url_segment, segment)]
    assert not differ, f"{len(differ)} of {len(segments)} segments differ, e.g. {differ[:5]}"
    accepted = sum(not isinstance(outcome(access_tokens._decode_segment, segment), str) for segment in segments)
    assert 0.05 < accepted / len(segments) < 0.95, "the sample tries both kinds of segment"


def test_the_validators_decoder_uses_the_compiled_check() -> None:
    """If PyJWT renames its seam, the override silently stops applying: this says so."""
    jws = access_tokens._DECODER._jws
    assert isinstance(jws, jwt.PyJWS)
    assert type(jws)._decode_base64url_segment is access_tokens._decode_segment
    assert hasattr(jwt.PyJWS, "_decode_base64url_segment"), "PyJWT no longer has the method this overrides"
