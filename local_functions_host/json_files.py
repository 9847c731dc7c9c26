"""Reading the host's JSON configuration files (host.json, local.settings.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import HostConfigurationError


def read_json_object(path: Path, *, fix_hint: str, shape: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a UTF-8 BOM is allowed, as the Functions tools write one)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HostConfigurationError(f"{path} is not valid JSON ({exc}); {fix_hint}") from None
    if not isinstance(document, dict):
        raise HostConfigurationError(f"{path} must hold {shape}.")
    return document
