"""App settings the way ``func start`` sees them: ``local.settings.json`` Values under the environment.

Also resolves ``%SETTING%`` binding expressions and reads the host's own selection of functions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HostConfigurationError
from .json_files import read_json_object

LOCAL_SETTINGS_FILE = "local.settings.json"
_EXPRESSION = re.compile(r"%([^%]*)%")
_FUNCTIONS_SELECTION = re.compile(r"^AzureFunctionsJobHost__functions__(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class LocalSettings:
    """What ``local.settings.json`` contributed: the Values that were applied and the ``Host`` section."""

    path: Path | None
    applied: tuple[str, ...] = ()
    overridden: tuple[str, ...] = ()
    host: Mapping[str, Any] = field(default_factory=dict)


def apply_local_settings(script_root: Path, environ: MutableMapping[str, str] | None = None) -> LocalSettings:
    """Copy ``Values`` from ``<script_root>/local.settings.json`` into ``environ`` where a key is not set yet.

    Environment variables win over the file, as with ``func start``. A missing file is fine (Azure has none).
    """
    env = os.environ if environ is None else environ
    path = script_root / LOCAL_SETTINGS_FILE
    if not path.is_file():
        return LocalSettings(path=None)
    document = read_json_object(path, fix_hint="fix or remove it.", shape="a JSON object with a 'Values' object")
    if document.get("IsEncrypted") is True:
        raise HostConfigurationError(
            f"{path} has IsEncrypted=true; the local host reads plain values only. "
            "Write the values in clear text (the file is git-ignored) or set them as environment variables."
        )
    values = document.get("Values") or {}
    if not isinstance(values, dict):
        raise HostConfigurationError(f"'Values' in {path} must be a JSON object of setting names to strings.")
    applied: list[str] = []
    overridden: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if not isinstance(value, (str, int, float, bool)):
            raise HostConfigurationError(
                f"Setting {key!r} in {path} must be a string (app settings are strings), not {type(value).__name__}."
            )
        if key in env:
            overridden.append(key)
            continue
        env[key] = _as_setting_text(value)
        applied.append(key)
    host = document.get("Host") or {}
    if not isinstance(host, dict):
        raise HostConfigurationError(f"'Host' in {path} must be a JSON object.")
    return LocalSettings(path=path, applied=tuple(applied), overridden=tuple(overridden), host=host)


def _as_setting_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve_expressions(value: str, settings: Mapping[str, str], *, where: str) -> str:
    """Replace every ``%NAME%`` in ``value`` with the app setting ``NAME``.

    ``where`` names the binding property for the error, e.g. ``"queueName of function 'process_order'"``.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if not name:
            raise HostConfigurationError(f"{where} has an empty %% expression in {value!r}.")
        resolved = settings.get(name)
        if resolved is None:
            raise HostConfigurationError(
                f"App setting {name!r} is not set but {where} uses %{name}%. "
                f"Add it to the Values of local.settings.json or set the environment variable {name}."
            )
        return resolved

    return _EXPRESSION.sub(substitute, value)


def selected_function_names(environ: Mapping[str, str]) -> list[str]:
    """Names listed as ``AzureFunctionsJobHost__functions__N`` (in N order); empty means all functions."""
    indexed: list[tuple[int, str]] = []
    for key, value in environ.items():
        match = _FUNCTIONS_SELECTION.match(key)
        if match and value.strip():
            indexed.append((int(match.group(1)), value.strip()))
    return [name for _, name in sorted(indexed)]
