"""Indexing a function app through the Python worker library, as the Functions host has it indexed."""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local_functions_host.connections import resolve_connection
from local_functions_host.errors import HostConfigurationError
from local_functions_host.loader import IndexedApp, index_app
from local_functions_host.worker import InProcessWorker

IndexApp = Callable[..., IndexedApp]


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[IndexApp]:
    """Write an entry file with a unique module name into ``tmp_path`` and index it; undo the imports after.

    The settings go into the environment, where the worker library reads app settings."""
    before = set(sys.modules)

    def run(source: str, settings: dict[str, str] | None = None, entry: str | None = None) -> IndexedApp:
        name = entry or f"entry_{uuid.uuid4().hex}.py"
        (tmp_path / name).write_text(textwrap.dedent(source))
        for key, value in {"PYTHON_SCRIPT_FILE_NAME": name, **(settings or {})}.items():
            monkeypatch.setenv(key, value)
        return index_app(tmp_path, os.environ, InProcessWorker())

    yield run
    for module in set(sys.modules) - before:
        del sys.modules[module]
    while str(tmp_path.resolve()) in sys.path:
        sys.path.remove(str(tmp_path.resolve()))


def test_triggers_are_described_from_the_registered_bindings(index: IndexApp) -> None:
    app = index(
        """
        import azure.functions as func
        app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

        @app.route(route="orders/{correlationId}", methods=["GET"])
        def get_order(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("x")

        @app.service_bus_queue_trigger(arg_name="msg", queue_name="%ORDERS_QUEUE%",
                                       connection="ServiceBusConnection", is_sessions_enabled=True)
        async def process(msg: func.ServiceBusMessage) -> None:
            pass

        @app.service_bus_queue_trigger(arg_name="msg", queue_name="%ORDERS_QUEUE%/$DeadLetterQueue",
                                       connection="ServiceBusConnection")
        def dead(msg: func.ServiceBusMessage, context: func.Context) -> None:
            pass
        """,
        {"ORDERS_QUEUE": "orders"},
    )

    functions = {spec.name: spec for spec in app.functions}
    http = functions["get_order"].http
    assert http is not None and http.route == "orders/{correlationId}" and http.methods == ("GET",)
    assert http.auth_level == "ANONYMOUS"
    process = functions["process"]
    assert process.function_id and process.service_bus is not None
    assert (process.service_bus.queue_name, process.service_bus.sessions, process.service_bus.dead_letter) == (
        "orders", True, False
    )
    dead = functions["dead"]
    assert dead.service_bus is not None and dead.service_bus.dead_letter and dead.service_bus.queue_name == "orders"
    assert len({spec.function_id for spec in app.functions}) == 3
    assert dead.service_bus.connection == "ServiceBusConnection"


def test_the_entry_file_may_import_the_app_from_a_package(index: IndexApp, tmp_path: Path) -> None:
    package = tmp_path / f"pkg_{uuid.uuid4().hex}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(textwrap.dedent(
        """
        import azure.functions as func
        app = func.FunctionApp()

        @app.route(route="ping")
        def ping(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("pong")
        """
    ))

    app = index(f"from {package.name}.app import app\n")

    assert [spec.name for spec in app.functions] == ["ping"]


def test_exactly_one_function_app_is_required(index: IndexApp) -> None:
    with pytest.raises(HostConfigurationError, match="Could not find top level function app.*exactly one module-level"):
        index("x = 1\n")
    with pytest.raises(HostConfigurationError, match="More than one FunctionApp"):
        index("import azure.functions as func\na = func.FunctionApp()\nb = func.FunctionApp()\n")


def test_missing_or_invalid_entry_file_names_the_setting(index: IndexApp, tmp_path: Path) -> None:
    with pytest.raises(HostConfigurationError, match="PYTHON_SCRIPT_FILE_NAME"):
        index_app(tmp_path, {"PYTHON_SCRIPT_FILE_NAME": "absent.py"}, InProcessWorker())
    with pytest.raises(HostConfigurationError, match="no folders"):
        index_app(tmp_path, {"PYTHON_SCRIPT_FILE_NAME": "sub/entry.py"}, InProcessWorker())


def test_import_errors_are_reported_with_their_cause(index: IndexApp) -> None:
    with pytest.raises(HostConfigurationError, match="ModuleNotFoundError: No module named 'a_module_that") as failure:
        index("import a_module_that_does_not_exist\n")
    assert "Traceback" in str(failure.value) or "line 1" in str(failure.value), "the worker's stack trace is shown"


def test_parameters_must_match_bindings(index: IndexApp) -> None:
    with pytest.raises(HostConfigurationError, match=r"parameters are declared in Python but not in the function definition.*'extra'"):
        index(
            """
            import azure.functions as func
            app = func.FunctionApp()

            @app.route(route="x")
            def f(req: func.HttpRequest, extra: str) -> func.HttpResponse:
                return func.HttpResponse("x")
            """
        )


def test_missing_setting_in_a_binding_expression_is_named(index: IndexApp) -> None:
    with pytest.raises(HostConfigurationError, match="App setting 'ORDERS_QUEUE' is not set"):
        index(
            """
            import azure.functions as func
            app = func.FunctionApp()

            @app.service_bus_queue_trigger(arg_name="msg", queue_name="%ORDERS_QUEUE%", connection="C")
            def f(msg: func.ServiceBusMessage) -> None:
                pass
            """
        )


def test_output_bindings_are_refused_rather_than_silently_dropped(index: IndexApp) -> None:
    with pytest.raises(HostConfigurationError, match="does not provide"):
        index(
            """
            import azure.functions as func
            app = func.FunctionApp()

            @app.route(route="x")
            @app.service_bus_queue_output(arg_name="out", queue_name="q", connection="C")
            def f(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
                return func.HttpResponse("x")
            """
        )


def test_other_triggers_are_indexed_but_not_runnable(index: IndexApp) -> None:
    app = index(
        """
        import azure.functions as func
        app = func.FunctionApp()

        @app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *")
        def tick(timer: func.TimerRequest) -> None:
            pass
        """
    )

    assert [(spec.name, spec.trigger_type, spec.supported) for spec in app.functions] == [
        ("tick", "timerTrigger", False)
    ]


def test_connections_resolve_like_the_functions_host() -> None:
    string = "Endpoint=sb://localhost:5999;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true;"

    assert resolve_connection("SB", {"SB": string}, function_name="f").connection_string == string
    assert resolve_connection("SB", {"AzureWebJobsSB": string}, function_name="f").endpoint == "sb://localhost:5999"
    identity = resolve_connection(
        "SB", {"SB__fullyQualifiedNamespace": "ns.servicebus.windows.net", "SB__clientId": "id-1"}, function_name="f"
    )
    assert (identity.fully_qualified_namespace, identity.client_id, identity.connection_string) == (
        "ns.servicebus.windows.net", "id-1", None
    )
    with pytest.raises(HostConfigurationError, match="SB__fullyQualifiedNamespace"):
        resolve_connection("SB", {}, function_name="f")
    with pytest.raises(HostConfigurationError, match="not a Service Bus connection string"):
        resolve_connection("SB", {"SB": "ns.servicebus.windows.net"}, function_name="f")


async def test_identity_based_connection_builds_a_client_for_the_namespace_without_connecting() -> None:
    connection = resolve_connection(
        "SB", {"SB__fullyQualifiedNamespace": "ns.servicebus.windows.net"}, function_name="f"
    )

    from service_platform import azure_identity

    client = connection.create_client(retry_total=1)
    other = connection.create_client(retry_total=1)
    try:
        assert client.fully_qualified_namespace == "ns.servicebus.windows.net"
        # One DefaultAzureCredential for the whole process, however many clients are made.
        assert type(azure_identity.process_credential()).__name__ == "DefaultAzureCredential"
        assert client._credential._credential is other._credential._credential is azure_identity.process_credential()
    finally:
        await client.close()
        await other.close()
        azure_identity.close_process_credential()
