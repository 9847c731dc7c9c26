"""``host.json``: the parts the local host honours, with the Functions defaults.

Keys are matched case-insensitively, as the Functions host's configuration binder does, and
``AzureFunctionsJobHost__a__b`` environment variables override ``a.b`` the same way they do in Azure.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HostConfigurationError
from .json_files import read_json_object

HOST_FILE = "host.json"
_OVERRIDE_PREFIX = "azurefunctionsjobhost__"
_TIMESPAN = re.compile(r"^(?P<sign>-)?(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2})(?:\.(?P<f>\d{1,7}))?)?$")

# The host's functionTimeout default outside the Consumption plan (Premium, Dedicated, Kubernetes).
DEFAULT_FUNCTION_TIMEOUT = 1800.0

_LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "information": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "none": logging.CRITICAL + 10,
}


@dataclass(frozen=True)
class ServiceBusOptions:
    """``extensions.serviceBus`` (extension bundle v4); durations in seconds, ``None`` meaning unbounded."""

    prefetch_count: int = 0
    auto_complete_messages: bool = True
    max_auto_lock_renewal_duration: float | None = 300.0
    max_concurrent_calls: int = 16
    max_concurrent_sessions: int = 8
    max_concurrent_calls_per_session: int = 1
    session_idle_timeout: float = 60.0
    max_message_batch_size: int = 1000
    try_timeout: float = 60.0
    client_retry: Mapping[str, Any] = field(default_factory=dict)
    """``clientRetryOptions`` as azure-servicebus client keywords (only those host.json sets)."""


@dataclass(frozen=True)
class LogLevels:
    """``logging.logLevel``: ``default`` for the host, ``Function``/``Function.<name>`` inside invocations."""

    default: int = logging.INFO
    function: int = logging.INFO
    per_function: Mapping[str, int] = field(default_factory=dict)

    def for_function(self, name: str) -> int:
        return self.per_function.get(name.lower(), self.function)

    @property
    def lowest(self) -> int:
        return min(self.default, self.function, *self.per_function.values())


@dataclass(frozen=True)
class HostConfig:
    path: Path
    route_prefix: str
    service_bus: ServiceBusOptions
    functions: tuple[str, ...]
    log_levels: LogLevels
    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT
    """``functionTimeout`` in seconds; ``None`` (``-1``) for unbounded."""


def parse_timespan(text: str, *, setting: str) -> float | None:
    """A .NET TimeSpan string (``[d.]hh:mm[:ss[.fffffff]]``) in seconds; negative (infinite) gives ``None``."""
    match = _TIMESPAN.match(str(text).strip())
    if not match:
        raise HostConfigurationError(
            f"host.json {setting} = {text!r} is not a duration; write it as hh:mm:ss, e.g. \"00:05:00\"."
        )
    seconds = (
        int(match["days"] or 0) * 86400
        + int(match["h"]) * 3600
        + int(match["m"]) * 60
        + int(match["s"] or 0)
        + (int((match["f"] or "0").ljust(7, "0")) / 10_000_000)
    )
    return None if match["sign"] else float(seconds)


def load_host_config(script_root: Path, environ: Mapping[str, str] | None = None) -> HostConfig:
    """Read ``<script_root>/host.json``, apply environment overrides, and return the settings used locally."""
    env = os.environ if environ is None else environ
    path = script_root / HOST_FILE
    if not path.is_file():
        raise HostConfigurationError(
            f"No {HOST_FILE} in {script_root.resolve()}: the script root is the folder holding host.json. "
            "Run from the app's root folder or pass --script-root."
        )
    document = read_json_object(path, fix_hint="fix it.", shape="a JSON object")
    _apply_environment_overrides(document, env)
    if str(_get(document, "version")) != "2.0":
        raise HostConfigurationError(f'{path} must declare "version": "2.0" (the Functions v4 host schema).')

    http = _section(document, "extensions", "http")
    route_prefix = _get(http, "routePrefix", "api")
    if not isinstance(route_prefix, str):
        raise HostConfigurationError("host.json extensions.http.routePrefix must be a string (\"\" for none).")

    functions = _get(document, "functions", [])
    if isinstance(functions, dict):  # from AzureFunctionsJobHost__functions__N overrides
        functions = [value for _, value in sorted(functions.items(), key=lambda item: int(item[0]))]
    if not isinstance(functions, list) or not all(isinstance(name, str) for name in functions):
        raise HostConfigurationError("host.json \"functions\" must be a list of function names.")

    timeout_text = _get(document, "functionTimeout")
    function_timeout = (
        DEFAULT_FUNCTION_TIMEOUT if timeout_text is None
        else None if str(timeout_text).strip() == "-1"
        else parse_timespan(str(timeout_text), setting="functionTimeout")
    )
    if function_timeout is not None and function_timeout <= 0:
        raise HostConfigurationError(f"host.json functionTimeout must be positive or -1, not {timeout_text!r}.")

    log_level_section = _section(document, "logging", "logLevel")
    return HostConfig(
        path=path,
        route_prefix=route_prefix.strip("/"),
        service_bus=_service_bus_options(_section(document, "extensions", "serviceBus")),
        functions=tuple(functions),
        log_levels=_log_levels(log_level_section),
        function_timeout=function_timeout,
    )


def _service_bus_options(section: Mapping[str, Any]) -> ServiceBusOptions:
    defaults = ServiceBusOptions()
    retry = _get(section, "clientRetryOptions", {}) or {}
    try_timeout_text = _get(retry, "tryTimeout")
    try_timeout = (
        defaults.try_timeout
        if try_timeout_text is None
        else parse_timespan(try_timeout_text, setting="extensions.serviceBus.clientRetryOptions.tryTimeout")
    ) or defaults.try_timeout
    idle_text = _get(section, "sessionIdleTimeout")
    idle = (
        try_timeout
        if idle_text is None
        else parse_timespan(idle_text, setting="extensions.serviceBus.sessionIdleTimeout")
    )
    renewal_text = _get(section, "maxAutoLockRenewalDuration")
    renewal = (
        defaults.max_auto_lock_renewal_duration
        if renewal_text is None
        else parse_timespan(renewal_text, setting="extensions.serviceBus.maxAutoLockRenewalDuration")
    )
    return ServiceBusOptions(
        client_retry=_client_retry(retry),
        prefetch_count=_int(section, "prefetchCount", defaults.prefetch_count, minimum=0),
        auto_complete_messages=_bool(section, "autoCompleteMessages", defaults.auto_complete_messages),
        max_auto_lock_renewal_duration=renewal,
        max_concurrent_calls=_int(section, "maxConcurrentCalls", defaults.max_concurrent_calls, minimum=1),
        max_concurrent_sessions=_int(section, "maxConcurrentSessions", defaults.max_concurrent_sessions, minimum=1),
        max_concurrent_calls_per_session=_int(
            section, "maxConcurrentCallsPerSession", defaults.max_concurrent_calls_per_session, minimum=1
        ),
        session_idle_timeout=idle if idle and idle > 0 else try_timeout,
        max_message_batch_size=_int(section, "maxMessageBatchSize", defaults.max_message_batch_size, minimum=1),
        try_timeout=try_timeout,
    )


def _client_retry(retry: Mapping[str, Any]) -> dict[str, Any]:
    """Map ``clientRetryOptions`` (the .NET client's names) onto the Python client's retry keywords."""
    where = "extensions.serviceBus.clientRetryOptions"
    kwargs: dict[str, Any] = {}
    if _get(retry, "maxRetries") is not None:
        kwargs["retry_total"] = _int(retry, "maxRetries", 3, minimum=0, where=where)
    if (delay := _get(retry, "delay")) is not None:
        kwargs["retry_backoff_factor"] = parse_timespan(delay, setting=f"{where}.delay") or 0.0
    if (max_delay := _get(retry, "maxDelay")) is not None:
        kwargs["retry_backoff_max"] = parse_timespan(max_delay, setting=f"{where}.maxDelay") or 0.0
    if (mode := _get(retry, "mode")) is not None:
        if str(mode).lower() not in ("exponential", "fixed"):
            raise HostConfigurationError(f"host.json {where}.mode must be Exponential or Fixed, not {mode!r}.")
        kwargs["retry_mode"] = str(mode).lower()
    if (try_timeout := _get(retry, "tryTimeout")) is not None:
        kwargs["try_timeout"] = parse_timespan(try_timeout, setting=f"{where}.tryTimeout")
    return kwargs


def _apply_environment_overrides(document: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, value in environ.items():
        if not key.lower().startswith(_OVERRIDE_PREFIX):
            continue
        path = key[len(_OVERRIDE_PREFIX) :].split("__")
        if not all(path):
            continue
        node = document
        for part in path[:-1]:
            existing = _find_key(node, part)
            child = node.get(existing) if existing is not None else None
            if not isinstance(child, dict):
                child = {}
                node[existing or part] = child
            node = child
        node[_find_key(node, path[-1]) or path[-1]] = value


def _find_key(node: Mapping[str, Any], name: str) -> str | None:
    lowered = name.lower()
    for key in node:
        if key.lower() == lowered:
            return key
    return None


def _get(node: Mapping[str, Any], name: str, default: Any = None) -> Any:
    key = _find_key(node, name)
    return default if key is None else node[key]


def _section(node: Mapping[str, Any], *names: str) -> Mapping[str, Any]:
    for name in names:
        child = _get(node, name, {})
        if not isinstance(child, dict):
            raise HostConfigurationError(f"host.json {'.'.join(names)} must be a JSON object.")
        node = child
    return node


def _int(
    section: Mapping[str, Any], name: str, default: int, *, minimum: int, where: str = "extensions.serviceBus"
) -> int:
    value = _get(section, name)
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HostConfigurationError(f"host.json {where}.{name} must be an integer, not {value!r}.") from None
    if number < minimum:
        raise HostConfigurationError(f"host.json {where}.{name} must be at least {minimum}, not {number}.")
    return number


def _bool(section: Mapping[str, Any], name: str, default: bool) -> bool:
    value = _get(section, name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("true", "false"):
        return str(value).strip().lower() == "true"
    raise HostConfigurationError(f"host.json extensions.serviceBus.{name} must be true or false, not {value!r}.")


def _log_levels(section: Mapping[str, Any]) -> LogLevels:
    default = _log_level(_get(section, "default", "Information"), "default")
    function = _log_level(_get(section, "Function"), "Function") if _get(section, "Function") else default
    per_function = {
        key[len("function.") :].lower(): _log_level(value, key)
        for key, value in section.items()
        if key.lower().startswith("function.") and not key.lower().endswith(".user")
    }
    return LogLevels(default=default, function=function, per_function=per_function)


def _log_level(value: Any, name: str) -> int:
    level = _LOG_LEVELS.get(str(value).strip().lower())
    if level is None:
        raise HostConfigurationError(
            f"host.json logging.logLevel.{name} = {value!r}; use one of Trace, Debug, Information, Warning, "
            "Error, Critical, None."
        )
    return level
