"""Broker configuration: the namespace's access key and the queues it serves.

The file is JSON; every value a queue omits takes the Azure Service Bus default. Durations are ISO 8601
(``PT1M``, ``P7D``) or a number of seconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

DEV_KEY_NAME = "RootManageSharedAccessKey"
DEV_KEY = "bG9jYWxidXMtZGV2ZWxvcG1lbnQta2V5LW5vdC1hLXNlY3JldA=="

# TimeSpan.MaxValue in Service Bus; treated as "never expires".
INFINITE_SECONDS = 10_675_199 * 86_400.0

_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


def parse_duration(value: Any, key: str) -> float:
    """Seconds in an ISO 8601 duration (``PT30S``) or a plain number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected an ISO 8601 duration such as 'PT1M' or seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())) and value.strip() not in ("P", "PT"):
        parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
        seconds = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    else:
        raise ConfigError(f"{key}: expected an ISO 8601 duration such as 'PT1M' or seconds, got {value!r}")
    if seconds <= 0:
        raise ConfigError(f"{key}: must be a positive duration, got {value!r}")
    return seconds


@dataclass(frozen=True)
class QueueConfig:
    """One queue and the Service Bus properties the broker honours."""

    name: str
    requires_session: bool = False
    lock_duration: float = 60.0
    max_delivery_count: int = 10
    requires_duplicate_detection: bool = False
    duplicate_detection_window: float = 600.0
    default_message_ttl: float = INFINITE_SECONDS
    dead_lettering_on_message_expiration: bool = False
    max_size_bytes: int = 1024 * 1024 * 1024
    max_message_size_bytes: int = 256 * 1024


@dataclass(frozen=True)
class BrokerConfig:
    """What ``python -m localbus`` serves."""

    queues: tuple[QueueConfig, ...]
    key_name: str = DEV_KEY_NAME
    key: str = DEV_KEY
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def connection_string(self, port: int, host: str = "localhost") -> str:
        """What an azure-servicebus program passes to ``from_connection_string`` to reach this broker."""
        return (
            f"Endpoint=sb://{host}:{port};SharedAccessKeyName={self.key_name};"
            f"SharedAccessKey={self.key};UseDevelopmentEmulator=true;"
        )

    def queue(self, name: str) -> QueueConfig | None:
        for queue in self.queues:
            if queue.name.lower() == name.lower():
                return queue
        return None


_QUEUE_KEYS = {
    "name",
    "requiresSession",
    "lockDuration",
    "maxDeliveryCount",
    "requiresDuplicateDetection",
    "duplicateDetectionHistoryTimeWindow",
    "defaultMessageTimeToLive",
    "deadLetteringOnMessageExpiration",
    "maxSizeInMegabytes",
    "maxMessageSizeInKilobytes",
}


def _bool(raw: dict, key: str, where: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _int(raw: dict, key: str, where: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: expected an integer from {low} to {high}, got {value!r}")
    return value


def _queue_from_dict(raw: Any, index: int) -> QueueConfig:
    where = f"queues[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object with at least a 'name'")
    unknown = set(raw) - _QUEUE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known keys are {sorted(_QUEUE_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-/]{0,259}", name):
        raise ConfigError(f"{where}.name: expected a queue name of letters, digits, '.', '-', '_' or '/', got {name!r}")
    lock = parse_duration(raw.get("lockDuration", "PT1M"), f"{where}.lockDuration")
    if lock > 300:
        raise ConfigError(f"{where}.lockDuration: at most PT5M, got {raw['lockDuration']!r}")
    window = parse_duration(raw.get("duplicateDetectionHistoryTimeWindow", "PT10M"), f"{where}.duplicateDetectionHistoryTimeWindow")
    ttl = raw.get("defaultMessageTimeToLive")
    return QueueConfig(
        name=name,
        requires_session=_bool(raw, "requiresSession", where, False),
        lock_duration=lock,
        max_delivery_count=_int(raw, "maxDeliveryCount", where, 10, 1, 2_000_000_000),
        requires_duplicate_detection=_bool(raw, "requiresDuplicateDetection", where, False),
        duplicate_detection_window=window,
        default_message_ttl=INFINITE_SECONDS if ttl is None else min(parse_duration(ttl, f"{where}.defaultMessageTimeToLive"), INFINITE_SECONDS),
        dead_lettering_on_message_expiration=_bool(raw, "deadLetteringOnMessageExpiration", where, False),
        max_size_bytes=_int(raw, "maxSizeInMegabytes", where, 1024, 1, 1024 * 1024) * 1024 * 1024,
        max_message_size_bytes=_int(raw, "maxMessageSizeInKilobytes", where, 256, 1, 100 * 1024) * 1024,
    )


def config_from_dict(raw: Any) -> BrokerConfig:
    """Validate a parsed JSON document; raise ``ConfigError`` naming the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a JSON object with a 'queues' list")
    unknown = set(raw) - {"queues", "sharedAccessKeyName", "sharedAccessKey", "$schema", "description"}
    if unknown:
        raise ConfigError(f"config: unknown key(s) {sorted(unknown)}; known keys are queues, sharedAccessKeyName, sharedAccessKey")
    queues_raw = raw.get("queues")
    if not isinstance(queues_raw, list):
        raise ConfigError("config.queues: expected a list of queue objects")
    queues = tuple(_queue_from_dict(q, i) for i, q in enumerate(queues_raw))
    names = [q.name.lower() for q in queues]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"config.queues: queue name(s) declared twice: {dupes}")
    key_name = raw.get("sharedAccessKeyName", DEV_KEY_NAME)
    key = raw.get("sharedAccessKey", DEV_KEY)
    for k, v in (("sharedAccessKeyName", key_name), ("sharedAccessKey", key)):
        if not isinstance(v, str) or not v or ";" in v:
            raise ConfigError(f"config.{k}: expected a non-empty string without ';'")
    return BrokerConfig(queues=queues, key_name=key_name, key=key)


def default_config() -> BrokerConfig:
    """The system's own queues (``orders`` with sessions and duplicate detection, ``order-status``)."""
    text = resources.files("localbus").joinpath("default_config.json").read_text(encoding="utf-8")
    return config_from_dict(json.loads(text))


def load_config(source: BrokerConfig | dict | str | Path | None) -> BrokerConfig:
    """A config from an object, a dict, a JSON file path, or ``None`` for the default config."""
    if source is None:
        return default_config()
    if isinstance(source, BrokerConfig):
        return source
    if isinstance(source, dict):
        return config_from_dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}; pass an existing JSON file with --config") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    return config_from_dict(raw)
