"""The real Python worker library (azure-functions-runtime) indexes the function app, driven through its
public async entry points with the Functions language worker protocol's messages (built from the published
FunctionRpc.proto descriptors), from the repository layout (as `func start` sees it) and from the
layout Dockerfile.functions builds under /home/site/wwwroot."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DRIVER = HERE / "worker_driver.py"

HTTP = {
    "submit_order": (["POST"], "orders"),
    "get_order_status": (["GET"], "orders/{correlationId}"),
    "list_products": (["GET"], "products"),
    "health": (["GET"], "health"),
    "readiness": (["GET"], "internal/ready"),
    "openapi_document": (["GET"], "openapi.json"),
    "list_dead_letters": (["GET"], "dead-letters"),
    "show_dead_letter": (["GET"], "dead-letters/{id}"),
    "replay_dead_letter": (["POST"], "dead-letters/{id}/replay"),
    "repair_dead_letter": (["POST"], "dead-letters/{id}/repair"),
    "discard_dead_letter": (["POST"], "dead-letters/{id}/discard"),
}
SERVICE_BUS = {
    "process_order": ("%ORDERS_QUEUE%", True),
    "handle_dead_lettered_order": ("%ORDERS_QUEUE%/$DeadLetterQueue", False),
}


@pytest.fixture(scope="module")
def protocol_dir() -> Path:
    """The repository root, from which the driver takes the worker protocol (downloaded if missing)."""
    install = ROOT / "tools" / "worker-protocol" / "install.sh"
    result = subprocess.run(["bash", str(install)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"{install.relative_to(ROOT)} failed:\n{result.stderr[-2000:]}")
    return ROOT


def index(protocol_dir: Path, script_root: Path, **settings: str) -> dict:
    """What the worker reports for ``script_root``, in a fresh process with the sample app settings."""
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(sample)
    env.update(settings)
    result = subprocess.run([sys.executable, str(DRIVER), str(protocol_dir), str(script_root)],
                            cwd=script_root, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("WORKER-RESULT ")]
    return json.loads(line.removeprefix("WORKER-RESULT "))


def assert_indexes_the_app(report: dict, script_root: Path) -> None:
    assert report["init_status"] == "Success", report["init_exception"]
    assert report["metadata_status"] == "Success"
    assert report["use_default_metadata_indexing"] is False
    for module, path in report["modules"].items():
        assert path and Path(path).is_relative_to(script_root), f"{module} was imported from {path}"
    functions = {f["name"]: f for f in report["functions"]}
    assert set(functions) == set(HTTP) | set(SERVICE_BUS)
    assert len(report["functions"]) == len(functions), "a function name appears twice"
    for name, (methods, route) in HTTP.items():
        trigger, output = functions[name]["raw_bindings"]
        assert trigger["type"] == "httpTrigger" and trigger["direction"] == "IN", name
        assert trigger["methods"] == methods and trigger["route"] == route, name
        assert trigger["authLevel"] == "ANONYMOUS", name
        assert output == {"type": "http", "direction": "OUT", "name": "$return"}, name
    for name, (queue, sessions) in SERVICE_BUS.items():
        (trigger,) = functions[name]["raw_bindings"]
        assert trigger["type"] == "serviceBusTrigger" and trigger["direction"] == "IN", name
        assert trigger["queueName"] == queue, name
        assert trigger["connection"] == "ServiceBusConnection", name
        assert trigger.get("isSessionsEnabled", False) is sessions, name
        assert functions[name]["bindings"][trigger["name"]] == {"type": "serviceBusTrigger", "direction": "in"}


def test_worker_indexes_the_repository_layout(protocol_dir: Path) -> None:
    assert_indexes_the_app(index(protocol_dir, ROOT, PYTHON_SCRIPT_FILE_NAME="functions_entry.py"), ROOT)


def docker_layout(dockerfile, image_root: Path) -> Path:
    """Copies what Dockerfile.functions COPYs, where it copies it; returns the script root."""
    workdir = Path("/")
    env = {}
    for keyword, arguments in dockerfile("Dockerfile.functions"):
        if keyword == "WORKDIR":
            workdir = workdir / arguments
            (image_root / workdir.relative_to("/")).mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            env.update(pair.partition("=")[::2] for pair in shlex.split(arguments))
        elif keyword == "COPY":
            *sources, destination = [a for a in shlex.split(arguments) if not a.startswith("--")]
            target = image_root / (workdir / destination).relative_to("/")
            into_directory = destination.endswith("/") or destination in (".", "..") or len(sources) > 1
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    # COPY <dir> <dest> copies the directory's contents into <dest>.
                    shutil.copytree(path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    file_target = target / path.name if into_directory else target
                    file_target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, file_target)
    return image_root / Path(env["AzureWebJobsScriptRoot"]).relative_to("/")


def test_worker_indexes_the_image_layout(protocol_dir: Path, dockerfile, tmp_path: Path) -> None:
    script_root = docker_layout(dockerfile, tmp_path)
    assert sorted(p.name for p in script_root.iterdir()) == ["function_app", "functions_entry.py", "host.json", "orders",
                                                          "service_platform"]
    assert_indexes_the_app(index(protocol_dir, script_root, PYTHON_SCRIPT_FILE_NAME="functions_entry.py"), script_root)


def test_worker_finds_nothing_without_the_entry_file_setting(protocol_dir: Path) -> None:
    """The default entry file name (function_app.py) does not exist here: the worker sees no functions,
    which is why every deployment sets PYTHON_SCRIPT_FILE_NAME."""
    report = index(protocol_dir, ROOT, PYTHON_SCRIPT_FILE_NAME="function_app.py")
    assert report["functions"] == []


def test_deployments_select_exactly_the_indexed_functions(protocol_dir: Path, rendered) -> None:
    indexed = {f["name"] for f in index(protocol_dir, ROOT, PYTHON_SCRIPT_FILE_NAME="functions_entry.py")["functions"]}
    for target, objects in rendered.items():
        selected = [e["value"] for o in objects if o["kind"] == "Deployment"
                    for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
                    if e["name"].startswith("AzureFunctionsJobHost__functions__")]
        assert sorted(selected) == sorted(indexed), f"k8s/{target}: every function runs in exactly one Deployment"
