"""The local Functions host serving HTTP triggers: a real host process, called over real sockets with httpx."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.local_host_apps.harness import HostProcess, copy_app
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_app(
        "http_app",
        tmp_path_factory.mktemp("http"),
        values={"SAMPLE_FROM_FILE": "from-file", "SAMPLE_OVERRIDDEN": "from-file"},
    )


@pytest.fixture(scope="module")
def host(app_dir: Path) -> Iterator[HostProcess]:
    with HostProcess(app_dir, env={"SAMPLE_OVERRIDDEN": "from-env"}) as running:
        yield running


@pytest.fixture
def client(host: HostProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.base_url, timeout=10) as http:
        yield http


def test_readiness_line_lists_every_function_with_its_url(host: HostProcess) -> None:
    output = "\n".join(host.stdout_lines)
    assert f"echo: [GET,POST] {host.base_url}/api/echo/{{name}}" in output
    assert f"custom_name: [DELETE] {host.base_url}/api/custom_name" in output
    assert f"Local Functions host ready on {host.base_url}" in output


def test_once_started_the_host_keeps_its_long_lived_objects_out_of_garbage_collections(host: HostProcess) -> None:
    """Full collections walked some 150,000 start-up objects for 75-120 ms each, stalling every request
    waiting meanwhile; the host freezes what it holds once it is ready (service_platform.heap)."""
    [frozen] = wait_until(lambda: [r for r in host.log_records() if "frozenObjects" in r],
                          "the host's start-up log line on its frozen objects")
    assert frozen["message"].startswith("local Functions host started")
    assert frozen["frozenObjects"] > 10_000, frozen


def test_route_params_query_headers_and_body_reach_the_function(client: httpx.Client, host: HostProcess) -> None:
    response = client.post(
        "/api/echo/Ada%20L?x=1&x=2&empty=",
        content=b'{"hello": "world"}',
        headers={"X-Test": "t-1", "Content-Type": "application/json"},
    )

    assert response.status_code == 200
    assert response.headers["x-echo"] == "yes"
    assert response.headers["content-type"] == "application/json"
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["route"] == {"name": "Ada L"}
    assert echoed["params"] == {"x": "1,2", "empty": ""}
    assert echoed["headers"]["x-test"] == "t-1"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["body"] == '{"hello": "world"}'
    assert echoed["url"] == f"{host.base_url}/api/echo/Ada%20L?x=1&x=2&empty="


def test_sync_functions_run_in_the_thread_pool_and_async_ones_on_the_loop(client: httpx.Client) -> None:
    sync_answer = client.get("/api/echo/a").json()
    async_answer = client.get("/api/async/42").json()

    assert sync_answer["thread"] != "MainThread"
    assert async_answer["thread"] == "MainThread"


def test_context_parameter_carries_the_invocation_id_and_function_name(client: httpx.Client) -> None:
    first = client.get("/api/async/1")
    second = client.get("/api/async/2")

    assert first.status_code == 201
    assert first.json()["value"] == 1
    assert first.json()["functionName"] == "async_number"
    assert first.json()["invocationId"] != second.json()["invocationId"]


def test_route_constraints_methods_and_literal_precedence(client: httpx.Client) -> None:
    assert client.get("/api/async/stats").text == "literal wins"
    assert client.get("/api/async/not-a-number").status_code == 404
    assert client.get("/API/Async/7").status_code == 201
    assert client.put("/api/echo/a").status_code == 404
    assert client.get("/api/custom_name").status_code == 404
    assert client.delete("/api/custom_name").status_code == 204
    assert client.get("/api/nothing-here").status_code == 404
    assert client.get("/echo/a").status_code == 404


def test_text_response_keeps_status_charset_and_cookies(client: httpx.Client) -> None:
    response = client.get("/api/text")

    assert response.status_code == 202
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["set-cookie"] == "a=1"
    assert response.text == "héllo"


def test_unhandled_exception_gives_an_empty_500_and_a_logged_traceback(client: httpx.Client, host: HostProcess) -> None:
    """As the Functions host: an empty 500 (nothing of the exception reaches the client), the error in the log."""
    response = client.get("/api/boom")

    assert response.status_code == 500
    assert response.content == b""
    records = _wait_for(host, lambda r: r.get("functionName") == "boom" and r["level"] == "ERROR")
    assert "the sample function failed on purpose" in records[0]["message"]
    assert "in boom" in records[0]["message"], "the traceback names the function's frame"
    assert records[0]["invocationId"]


def test_logs_are_json_lines_with_invocation_fields_and_extras(client: httpx.Client, host: HostProcess) -> None:
    invocation_id = client.get("/api/async/5").json()["invocationId"]

    records = _wait_for(host, lambda r: r.get("invocationId") == invocation_id and r["logger"] == "sample_http")
    assert records[0]["message"] == "async number called"
    assert records[0]["functionName"] == "async_number"
    assert records[0]["correlationId"] == "cid-from-extra"


def test_local_settings_values_under_the_environment_and_cwd_is_the_script_root(
    client: httpx.Client, app_dir: Path
) -> None:
    answer = client.get("/api/setting").json()

    assert answer == {"fromFile": "from-file", "overridden": "from-env", "cwd": str(app_dir.resolve())}


def test_host_status_endpoint_reports_running_and_the_functions(client: httpx.Client) -> None:
    response = client.get("/admin/host/status")

    assert response.status_code == 200
    assert response.json()["state"] == "Running"
    assert "echo" in response.json()["functions"]
    functions = client.get("/admin/functions").json()
    echo = next(f for f in functions if f["name"] == "echo")
    assert echo["invoke_url_template"] == "/api/echo/{name}"
    assert echo["bindings"][0]["type"] == "httpTrigger"


def test_a_client_that_leaves_mid_body_does_not_run_the_function(client: httpx.Client, host: HostProcess) -> None:
    def echo_runs() -> int:
        return len([r for r in host.log_records() if r.get("functionName") == "echo" and r.get("outcome")])

    before = echo_runs()
    with socket.create_connection(("127.0.0.1", host.port)) as raw:
        raw.sendall(b"POST /api/echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    client.get("/api/echo/after")  # a later request is served, and logged after any earlier one

    _wait_for(host, lambda r: r.get("functionName") == "echo" and r.get("outcome"), timeout=5)
    time.sleep(0.2)
    assert echo_runs() == before + 1


def test_functions_option_runs_only_the_named_functions(app_dir: Path) -> None:
    with HostProcess(app_dir, args=["--functions", "text,setting"]) as running:
        with httpx.Client(base_url=running.base_url, timeout=10) as http:
            assert http.get("/api/text").status_code == 202
            assert http.get("/api/echo/a").status_code == 404
            assert http.get("/admin/host/status").json()["functions"] == ["text", "setting"]


def test_functions_selection_from_the_environment_like_the_functions_host(app_dir: Path) -> None:
    env = {"AzureFunctionsJobHost__functions__0": "echo"}
    with HostProcess(app_dir, env=env) as running:
        with httpx.Client(base_url=running.base_url, timeout=10) as http:
            assert http.get("/api/echo/a").status_code == 200
            assert http.get("/api/text").status_code == 404


def test_request_body_over_the_host_limit_is_refused_before_the_function_runs(app_dir: Path) -> None:
    with HostProcess(app_dir, env={"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1000"}) as running:
        with httpx.Client(base_url=running.base_url, timeout=10) as http:
            assert http.post("/api/echo/a", content=b"x" * 1000).status_code == 200
            assert http.post("/api/echo/a", content=b"x" * 1001).status_code == 413
        assert not [r for r in running.log_records() if r.get("functionName") == "echo" and "x" * 1001 in str(r)]


def test_sigterm_lets_a_request_under_way_finish_then_exits_cleanly(app_dir: Path) -> None:
    running = HostProcess(app_dir).start()
    answers: list[httpx.Response] = []

    def call_slow() -> None:
        with httpx.Client(base_url=running.base_url, timeout=10) as http:
            answers.append(http.get("/api/slow", params={"seconds": "1.5"}))

    caller = threading.Thread(target=call_slow)
    caller.start()
    _wait_for(running, lambda r: False, timeout=0.5, required=False)
    code = running.stop(signal.SIGTERM)
    caller.join(10)

    assert code == 0
    assert answers and answers[0].status_code == 200 and answers[0].text == "done"
    assert any(r["message"] == "Stopped." for r in running.log_records())


def test_a_blocked_synchronous_function_does_not_hold_the_exit_beyond_the_shutdown_timeout(app_dir: Path) -> None:
    running = HostProcess(app_dir, args=["--shutdown-timeout", "1"]).start()
    errors: list[Exception] = []
    answers: list[httpx.Response] = []

    def call_stuck() -> None:
        try:
            with httpx.Client(base_url=running.base_url, timeout=30) as http:
                answers.append(http.get("/api/slow_sync", params={"seconds": "60"}))
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call_stuck)
    caller.start()
    _wait_for(running, lambda r: False, timeout=0.5, required=False)
    started = time.monotonic()
    code = running.stop(signal.SIGTERM, timeout=20)
    elapsed = time.monotonic() - started
    caller.join(10)

    assert code == 0
    assert elapsed < 10
    assert errors or answers[0].status_code >= 500, "the stuck request cannot have been answered with success"
    assert any("still running at the shutdown timeout" in r["message"] for r in running.log_records())


def test_configuration_error_exits_with_a_clear_message(tmp_path: Path) -> None:
    app = copy_app("http_app", tmp_path, values={"PYTHON_SCRIPT_FILE_NAME": "missing_entry.py"})
    host = HostProcess(app)

    with pytest.raises(RuntimeError) as failure:
        host.start()

    assert host.proc is not None and host.proc.returncode == 2
    assert "missing_entry.py does not exist" in str(failure.value)
    assert "PYTHON_SCRIPT_FILE_NAME" in str(failure.value)


def _wait_for(host: HostProcess, predicate, timeout: float = 5.0, required: bool = True) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [record for record in host.log_records() if predicate(record)]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if required:
        assert found, f"no matching log record in:\n{host.stderr_text()}"
    return found
