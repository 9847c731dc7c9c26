"""The Dockerfiles, read as a build would read them (no container engine runs here): pinned bases, a
non-root user, nothing secret, only files that exist and that .dockerignore lets through, and the settings
the Functions host needs to find the app."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ("Dockerfile.functions", "Dockerfile.websocket")
LOCAL_ONLY_PACKAGES = {
    "python-qpid-proton": "proton", "fakeredis": "fakeredis",
    # The local host's copy of the Python worker; the Functions base image brings its own.
    "azure-functions-runtime": "azure_functions_runtime", "protobuf": "google",
}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|ACCESS_?KEY|CONNECTION", re.IGNORECASE)


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions:
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, arguments))
    return result


def env_values(instructions: list[tuple[str, str]]) -> dict[str, str]:
    values = {}
    for keyword, arguments in instructions:
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


def copy_sources(instructions: list[tuple[str, str]]) -> list[str]:
    sources = []
    for keyword, arguments in instructions:
        if keyword == "COPY" and "--from=" not in arguments:
            sources += [s for s in shlex.split(arguments) if not s.startswith("--")][:-1]
    return sources


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned(dockerfile, name: str) -> None:
    build_stages = set()
    for keyword, arguments in dockerfile(name):
        if keyword == "FROM":
            image, *alias = arguments.split()
            if image in build_stages:
                continue
            assert "$" not in image, f"{name}: base image {image} comes from a build argument"
            assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, f"{name}: {image} has no tag"
            assert not image.endswith(":latest"), f"{name}: {image} floats"
            if alias:
                build_stages.add(alias[-1])


def test_the_expected_base_images(dockerfile) -> None:
    def bases(name: str) -> list[str]:
        return [a.split()[0] for k, a in dockerfile(name) if k == "FROM"]
    assert bases("Dockerfile.functions") == ["mcr.microsoft.com/azure-functions/python:4-python3.13"]
    assert set(bases("Dockerfile.websocket")) == {"python:3.13-slim"}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_runs_as_a_non_root_user(dockerfile, name: str) -> None:
    final = stages(dockerfile(name))[-1]
    users = [a for k, a in final if k == "USER"]
    assert users, f"{name}: the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit() and int(user) >= 10000, (
        f"{name}: USER {users[-1]}; use a numeric uid >= 10000 so runAsNonRoot can verify it")
    after_user = [k for k, _ in final[final.index(("USER", users[-1])):]]
    assert "RUN" not in after_user and "COPY" not in after_user, f"{name}: nothing runs or is copied after USER"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_nothing_secret_or_remote_goes_in(dockerfile, name: str) -> None:
    instructions = dockerfile(name)
    for keyword, arguments in instructions:
        assert keyword != "ADD", f"{name}: use COPY; ADD fetches URLs and unpacks archives"
        if keyword in ("ENV", "ARG"):
            for pair in shlex.split(arguments):
                assert not SECRET_NAME.search(pair.partition("=")[0]), f"{name}: {keyword} {pair} looks secret"
        assert not re.search(r"SharedAccessKey=|AccountKey=|Password=", arguments, re.IGNORECASE), (keyword, arguments)
        if keyword == "RUN":
            assert not re.search(r"\b(curl|wget)\b", arguments), f"{name}: downloads outside the package managers"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copied_paths_exist_and_pass_dockerignore(dockerfile, name: str) -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "**", ".dockerignore starts by excluding everything"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = copy_sources(dockerfile(name))
    assert sources
    for source in sources:
        path = source.rstrip("/")
        assert (ROOT / path).exists(), f"{name} copies {source}, which is not in the repository"
        assert path in allowed, f"{name} copies {source}, but .dockerignore keeps it out of the build context"
    for excluded in ("local.settings.json", ".venv", ".git", "tests", ".local"):
        assert excluded not in allowed


def test_functions_image_is_laid_out_for_the_host(dockerfile) -> None:
    instructions = dockerfile("Dockerfile.functions")
    env = env_values(instructions)
    assert env["AzureWebJobsScriptRoot"] == "/home/site/wwwroot"
    assert env["AzureFunctionsJobHost__Logging__Console__IsEnabled"] == "true"
    assert env["PYTHON_SCRIPT_FILE_NAME"] == "functions_entry.py"
    assert env["FUNCTIONS_WORKER_RUNTIME"] == "python"
    workdirs = [a for k, a in instructions if k == "WORKDIR"]
    assert workdirs[-1] == env["AzureWebJobsScriptRoot"], "the app is copied into the script root"
    assert set(copy_sources(instructions)) == {"requirements.txt", "host.json", "functions_entry.py",
                                               "service_platform/", "function_app/", "orders/"}
    port = int(env["ASPNETCORE_URLS"].rsplit(":", 1)[1])
    assert port >= 1024, "a non-root process cannot bind a privileged port once capabilities are dropped"
    assert ("EXPOSE", str(port)) in instructions
    assert any(k == "HEALTHCHECK" and "/admin/host/ping" in a for k, a in instructions)


def test_websocket_image_runs_the_service(dockerfile) -> None:
    instructions = dockerfile("Dockerfile.websocket")
    final = stages(instructions)[-1]
    assert ("CMD", '["python", "-m", "websocket_service"]') in final
    env = env_values(final)
    assert env["WS_HOST"] == "0.0.0.0" and ("EXPOSE", env["WS_PORT"]) in final
    assert any(k == "HEALTHCHECK" and "/healthz" in a for k, a in final)
    assert set(copy_sources(instructions)) == {"requirements.txt", "service_platform/", "websocket_service/"}


PROJECT_PACKAGES = {"function_app", "orders", "websocket_service", "service_platform", "localbus",
                    "local_functions_host", "local_stack", "local_servers", "local_servers"}


def _project_closure(entry: str) -> set[str]:
    """The project's packages ``entry`` needs, following imports from package to package."""
    needed, todo = set(), [entry]
    while todo:
        package = todo.pop()
        if package in needed:
            continue
        needed.add(package)
        todo.extend((_imported_modules(ROOT / package) & PROJECT_PACKAGES) - needed)
    return needed


@pytest.mark.parametrize("name, entries", [("Dockerfile.functions", ("function_app", "orders")),
                                           ("Dockerfile.websocket", ("websocket_service",))])
def test_each_image_ships_exactly_the_project_packages_its_code_imports(dockerfile, name, entries) -> None:
    needed = set().union(*(_project_closure(entry) for entry in entries))
    copied = {source.rstrip("/") for source in copy_sources(dockerfile(name)) if source.endswith("/")}
    assert copied == needed, f"{name} copies {sorted(copied)}, its code imports {sorted(needed)}"


def _imported_modules(package: Path) -> set[str]:
    modules = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules


def test_images_leave_out_only_packages_the_shipped_code_never_imports(dockerfile) -> None:
    """The images skip the local-only packages (the local broker's AMQP engine, the embedded Redis)."""
    pinned = {line.split("==")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.lstrip().startswith("#")}
    shipped = set().union(*(_imported_modules(ROOT / p)
                            for p in ("function_app", "orders", "websocket_service", "service_platform")))
    for name in DOCKERFILES:
        runs = " ".join(a for k, a in dockerfile(name) if k == "RUN" and "requirements" in a)
        excluded = set(re.findall(r"\^\(([^)]*)\)==", runs)[0].split("|"))
        assert excluded == set(LOCAL_ONLY_PACKAGES), name
        for package, module in LOCAL_ONLY_PACKAGES.items():
            assert package in pinned, f"{package} is no longer in requirements.txt; drop it from {name}'s filter"
            assert module not in shipped, f"shipped code imports {module}, which {name} leaves out"
        assert "--only-binary :all:" in runs, f"{name}: the images have no compiler; wheels only"


def test_exposed_ports_match_the_deployments(dockerfile, rendered) -> None:
    ports = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
             for d in rendered["overlays/prod"] if d["kind"] == "Deployment"}
    functions_port = int(env_values(dockerfile("Dockerfile.functions"))["ASPNETCORE_URLS"].rsplit(":", 1)[1])
    websocket_port = int(env_values(dockerfile("Dockerfile.websocket"))["WS_PORT"])
    assert ports == {"orders-intake": functions_port, "orders-processor": functions_port,
                     "orders-operations": functions_port, "websocket": websocket_port}
    assert json.loads((ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"] == "api"
