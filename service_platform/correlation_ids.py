"""The correlationId rule shared by every service: a UUID in its canonical 36-character text form."""

from __future__ import annotations

import re

CORRELATION_ID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
EXAMPLE_CORRELATION_ID = "3f2b0c1e-8a4d-4e0f-9b7a-2d1c5e6f7a8b"

_PATTERN = re.compile(CORRELATION_ID_PATTERN)


def is_correlation_id(value: object) -> bool:
    """True for a UUID in its canonical hyphenated form, the only form the intake issues."""
    return isinstance(value, str) and _PATTERN.fullmatch(value) is not None


def canonical_correlation_id(value: str) -> str:
    """The lower-case form under which a correlationId is stored and looked up."""
    return value.lower()
