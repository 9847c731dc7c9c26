"""Fixtures for the deployment checks: rendered kustomize overlays and the offline check tools."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
TOOLS = ROOT / "tools"
OVERLAYS = ("dev", "prod")
# Everything kustomize can build: the overlays that are deployed, and the base they share.
TARGETS = ("base", *(f"overlays/{name}" for name in OVERLAYS))
KEDA_API = "keda.sh/v1alpha1"


def kustomize(target: str) -> list[dict]:
    """The objects ``kubectl kustomize k8s/<target>`` renders."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: the manifests are rendered with `kubectl kustomize` "
                    "(kubectl 1.27 or later, which embeds kustomize v5); install it and run the tests again")
    result = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize k8s/{target} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Objects per kustomize target (``base``, ``overlays/dev``, ``overlays/prod``)."""
    return {target: kustomize(target) for target in TARGETS}


def run_install_script(script: Path) -> None:
    """Runs one of the idempotent tools/*/install.sh scripts (scripts/test runs them first, so this is
    normally a no-op); fails the test with the script's own message when it cannot install."""
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"{script.relative_to(ROOT)} failed:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def keda_validator() -> Iterator[Callable[[list[dict]], dict[tuple[str, str], list[str]]]]:
    """Validates KEDA objects with tools/keda-schemas/validate.mjs; returns {(kind, name): [errors]}."""
    run_install_script(TOOLS / "keda-schemas" / "install.sh")
    node = shutil.which("node")
    assert node is not None

    def validate(objects: list[dict]) -> dict[tuple[str, str], list[str]]:
        result = subprocess.run(
            [node, str(TOOLS / "keda-schemas" / "validate.mjs")],
            input=json.dumps(objects), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"validate.mjs failed:\n{result.stderr}"
        return {(r["kind"], r["name"]): r["errors"] for r in json.loads(result.stdout)}

    yield validate


@pytest.fixture(scope="session")
def checkov() -> Path:
    run_install_script(TOOLS / "keda-schemas" / "install.sh")
    return TOOLS / "checkov" / ".venv" / "bin" / "checkov"


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, f"{path.name} ends inside a continued line"
    return instructions


@pytest.fixture(scope="session")
def dockerfile() -> Callable[[str], list[tuple[str, str]]]:
    return lambda name: parse_dockerfile(ROOT / name)
