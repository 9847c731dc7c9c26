"""Index a function app through the Python worker library, and describe its triggers.

The worker imports the entry file (``PYTHON_SCRIPT_FILE_NAME``, default ``function_app.py``) as a
top-level module with the script root on ``sys.path``, takes the one ``FunctionApp`` it defines, and
reports each function's raw bindings. Nothing here opens a connection.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .app_settings import resolve_expressions
from .errors import HostConfigurationError
from .worker import InProcessWorker

SCRIPT_FILE_SETTING = "PYTHON_SCRIPT_FILE_NAME"
DEFAULT_SCRIPT_FILE = "function_app.py"
_SCRIPT_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*\.py$")
_DEAD_LETTER_SUFFIX = "/$deadletterqueue"
_DEFAULT_SERVICE_BUS_CONNECTION = "AzureWebJobsServiceBus"


@dataclass(frozen=True)
class HttpTrigger:
    route: str
    methods: tuple[str, ...] | None
    auth_level: str


@dataclass(frozen=True)
class ServiceBusTrigger:
    entity: str
    """Queue name, or ``<topic>/Subscriptions/<subscription>``, without any dead-letter suffix."""
    queue_name: str | None
    topic_name: str | None
    subscription_name: str | None
    dead_letter: bool
    connection: str
    sessions: bool
    many: bool

    @property
    def source(self) -> str:
        """The entity the trigger receives from: ``entity``, with ``/$DeadLetterQueue`` for a dead-letter trigger."""
        return f"{self.entity}/$DeadLetterQueue" if self.dead_letter else self.entity


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: what triggers it and how to call it."""

    name: str
    function_id: str
    """The id the worker gave the function; invocations name it."""
    trigger_type: str
    trigger_param: str
    raw_bindings: tuple[Mapping[str, Any], ...]
    directory: str
    http: HttpTrigger | None = None
    service_bus: ServiceBusTrigger | None = None

    @property
    def supported(self) -> bool:
        return self.http is not None or self.service_bus is not None


@dataclass(frozen=True)
class IndexedApp:
    script_root: Path
    entry_file: str
    functions: tuple[FunctionSpec, ...]


def entry_file_name(settings: Mapping[str, str]) -> str:
    name = settings.get(SCRIPT_FILE_SETTING) or DEFAULT_SCRIPT_FILE
    if not _SCRIPT_FILE_NAME.match(name):
        raise HostConfigurationError(
            f"{SCRIPT_FILE_SETTING}={name!r} is not a valid entry file name: it must be a .py file directly in "
            "the script root (letters, digits, '_' and '-'; no folders)."
        )
    return name


def index_app(script_root: Path, settings: Mapping[str, str], worker: InProcessWorker) -> IndexedApp:
    """Have the worker import and index the entry file; describe every function it reports.

    The worker checks what the Functions host and the worker check in Azure (one ``FunctionApp``,
    parameters matching bindings); this adds the checks of the local host (a readable entry file name,
    settings named in binding expressions, bindings the local host provides).
    """
    root = script_root.resolve()
    entry = entry_file_name(settings)
    if not (root / entry).is_file():
        raise HostConfigurationError(
            f"The entry file {root / entry} does not exist. The worker loads the file named by "
            f"{SCRIPT_FILE_SETTING} (default {DEFAULT_SCRIPT_FILE}) from the script root; set "
            f"{SCRIPT_FILE_SETTING} in local.settings.json or the environment, or create the file."
        )
    # The worker's process starts in the script root with it at the front of sys.path.
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    metadata = worker.index(root)
    functions = tuple(
        describe(function.name, function.function_id, [json.loads(raw) for raw in function.raw_bindings],
                 root, settings)
        for function in metadata
    )
    return IndexedApp(script_root=root, entry_file=entry, functions=functions)


def describe(
    name: str, function_id: str, bindings: list[Mapping[str, Any]], root: Path, settings: Mapping[str, str]
) -> FunctionSpec:
    """One function from the raw bindings the worker reports for it."""
    triggers = [b for b in bindings if str(b.get("type", "")).lower().endswith("trigger")]
    if len(triggers) != 1:
        raise HostConfigurationError(f"Function {name!r} must have exactly one trigger, found {len(triggers)}.")
    trigger = triggers[0]
    trigger_type = str(trigger["type"])
    others = [b for b in bindings if b is not trigger]
    unsupported = [
        b for b in others
        if not (b.get("name") == "$return" and trigger_type == "httpTrigger" and b.get("type") == "http")
    ]
    http = service_bus = None
    if trigger_type == "httpTrigger":
        http = _http_trigger(name, trigger)
    elif trigger_type == "serviceBusTrigger":
        service_bus = _service_bus_trigger(name, trigger, settings)
    if unsupported and (http or service_bus):
        described = ", ".join(f"{b.get('type')} {b.get('direction', '').lower()} binding {b.get('name')!r}" for b in unsupported)
        raise HostConfigurationError(
            f"Function {name!r} uses {described}, which the local host does not provide. "
            "Use the Azure SDK from the function body instead, or run it under the Functions host."
        )
    return FunctionSpec(
        name=name,
        function_id=function_id,
        trigger_type=trigger_type,
        trigger_param=str(trigger["name"]),
        raw_bindings=tuple(bindings),
        directory=str(root),
        http=http,
        service_bus=service_bus,
    )


def _http_trigger(name: str, binding: Mapping[str, Any]) -> HttpTrigger:
    route = binding.get("route") or name
    methods = binding.get("methods")
    return HttpTrigger(
        route=str(route).strip("/"),
        methods=tuple(str(m).upper() for m in methods) if methods else None,
        auth_level=str(binding.get("authLevel", "FUNCTION")).upper(),
    )


def _service_bus_trigger(name: str, binding: Mapping[str, Any], settings: Mapping[str, str]) -> ServiceBusTrigger:
    def resolved(key: str) -> str | None:
        value = binding.get(key)
        if value is None:
            return None
        return resolve_expressions(str(value), settings, where=f"{key} of function {name!r}")

    queue = resolved("queueName")
    topic = resolved("topicName")
    subscription = resolved("subscriptionName")
    dead_letter = False
    if queue:
        if queue.lower().endswith(_DEAD_LETTER_SUFFIX):
            queue, dead_letter = queue[: -len(_DEAD_LETTER_SUFFIX)], True
        entity = queue
    elif topic and subscription:
        if subscription.lower().endswith(_DEAD_LETTER_SUFFIX):
            subscription, dead_letter = subscription[: -len(_DEAD_LETTER_SUFFIX)], True
        entity = f"{topic}/Subscriptions/{subscription}"
    else:
        raise HostConfigurationError(
            f"Function {name!r}: a Service Bus trigger needs queueName, or topicName and subscriptionName."
        )
    connection = resolved("connection") or _DEFAULT_SERVICE_BUS_CONNECTION
    return ServiceBusTrigger(
        entity=entity,
        queue_name=queue,
        topic_name=topic if not queue else None,
        subscription_name=subscription if not queue else None,
        dead_letter=dead_letter,
        connection=connection,
        sessions=bool(binding.get("isSessionsEnabled", False)),
        many=str(binding.get("cardinality", "ONE")).upper() == "MANY",
    )
