"""Index a function app the way the Python worker does, and describe its triggers.

The worker imports the entry file (``PYTHON_SCRIPT_FILE_NAME``, default ``function_app.py``) as a
top-level module with the script root on ``sys.path``, takes the one ``FunctionApp`` it defines, and
reads each function's bindings from ``get_functions()``. Nothing here opens a connection.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .app_settings import resolve_expressions
from .errors import HostConfigurationError

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


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: what triggers it and how to call it."""

    name: str
    func: Callable[..., Any]
    is_async: bool
    trigger_type: str
    trigger_param: str
    requires_context: bool
    has_return: bool
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


def index_app(script_root: Path, settings: Mapping[str, str]) -> IndexedApp:
    """Import the entry file and describe every function it registers, resolving ``%SETTING%`` expressions."""
    root = script_root.resolve()
    entry = entry_file_name(settings)
    if not (root / entry).is_file():
        raise HostConfigurationError(
            f"The entry file {root / entry} does not exist. The worker loads the file named by "
            f"{SCRIPT_FILE_SETTING} (default {DEFAULT_SCRIPT_FILE}) from the script root; set "
            f"{SCRIPT_FILE_SETTING} in local.settings.json or the environment, or create the file."
        )
    module = _import_entry(root, entry)
    app = _the_function_app(module, entry)
    try:
        indexed = app.get_functions()
    except Exception as exc:
        raise HostConfigurationError(f"Indexing the functions of {entry} failed: {exc}") from exc
    functions = tuple(_describe(function, root, settings) for function in indexed)
    return IndexedApp(script_root=root, entry_file=entry, functions=functions)


def _import_entry(root: Path, entry: str) -> Any:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module_name = Path(entry).stem
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise HostConfigurationError(
            f"Importing {entry} from {root} failed with {type(exc).__name__}: {exc}. "
            "Fix the import error (the traceback above shows where); missing packages belong in requirements.txt."
        ) from exc


def _the_function_app(module: Any, entry: str) -> Any:
    from azure.functions import FunctionRegister

    apps = [
        name for name in dir(module) if isinstance(getattr(module, name, None), FunctionRegister)
    ]
    if not apps:
        raise HostConfigurationError(
            f"{entry} defines no top-level FunctionApp: the worker needs exactly one module-level "
            "azure.functions.FunctionApp instance in the entry file (e.g. `from function_app.app import app`)."
        )
    if len(apps) > 1:
        raise HostConfigurationError(
            f"{entry} defines more than one top-level FunctionApp ({', '.join(apps)}); the worker accepts "
            "exactly one. Keep one app and register the others' functions as Blueprints."
        )
    return getattr(module, apps[0])


def _describe(function: Any, root: Path, settings: Mapping[str, str]) -> FunctionSpec:
    name = function.get_function_name()
    func = function.get_user_function()
    bindings = tuple(json.loads(raw) for raw in function.get_raw_bindings())
    triggers = [b for b in bindings if str(b.get("type", "")).lower().endswith("trigger")]
    if len(triggers) != 1:
        raise HostConfigurationError(f"Function {name!r} must have exactly one trigger, found {len(triggers)}.")
    trigger = triggers[0]
    trigger_type = str(trigger["type"])
    others = [b for b in bindings if b is not trigger]
    has_return = any(b.get("name") == "$return" for b in others)
    unsupported = [
        b for b in others
        if not (b.get("name") == "$return" and trigger_type == "httpTrigger" and b.get("type") == "http")
    ]
    requires_context = _check_parameters(name, func, trigger["name"], bound={b["name"] for b in bindings})

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
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        trigger_type=trigger_type,
        trigger_param=trigger["name"],
        requires_context=requires_context,
        has_return=has_return,
        raw_bindings=bindings,
        directory=str(root),
        http=http,
        service_bus=service_bus,
    )


def _check_parameters(name: str, func: Callable[..., Any], trigger_param: str, *, bound: set[str]) -> bool:
    """Mirror the worker's check that Python parameters and declared bindings match one to one."""
    params = set(inspect.signature(func).parameters)
    declared = bound - {"$return"}
    requires_context = "context" in params and "context" not in declared
    undeclared = params - declared - ({"context"} if requires_context else set())
    if undeclared:
        raise HostConfigurationError(
            f"Function {name!r} has parameters {sorted(undeclared)} that no binding declares; "
            "every parameter except `context` must be a binding (e.g. the trigger's arg_name)."
        )
    missing = declared - params
    if missing:
        raise HostConfigurationError(
            f"Function {name!r} declares bindings {sorted(missing)} that are not parameters of the Python function."
        )
    if trigger_param not in params:
        raise HostConfigurationError(f"Function {name!r} has no parameter for its trigger {trigger_param!r}.")
    return requires_context


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
