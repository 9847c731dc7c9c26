"""Every kustomize target renders, and every object in it validates strictly: built-in kinds against the
Kubernetes OpenAPI schema (kubernetes-validate, unknown fields refused), KEDA kinds against KEDA's own
validators (tools/keda-schemas, unknown fields refused), with a cross-check against KEDA's CRDs where a
copy of them sits next to the project."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The oldest Kubernetes minor that AKS supports for the life of this release; bump with the cluster.
KUBERNETES_VERSION = "1.34.0"
KEDA_API = "keda.sh/v1alpha1"
# Kinds that are neither built in nor KEDA's; their values are checked in test_manifest_values.py.
OTHER_CUSTOM_KINDS = {("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass")}
# KEDA's CRDs, on the developers' machines and in CI only (not part of the project).
KEDA_CRDS = ROOT.parent / "shared" / "k8s-schemas" / "keda"


def builtin_objects(objects: list[dict]) -> list[dict]:
    return [o for o in objects
            if o["apiVersion"] != KEDA_API and (o["apiVersion"], o["kind"]) not in OTHER_CUSTOM_KINDS]


def validate_builtin(obj: dict) -> list[str]:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message}"]
    return []


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_target_renders_every_component(rendered: dict[str, list[dict]], target: str) -> None:
    kinds = {(o["kind"], o["metadata"]["name"].rsplit("-", 1)[0] if o["kind"] == "ConfigMap" else o["metadata"]["name"])
             for o in rendered[target]}
    for expected in [("Deployment", "orders-intake"), ("Deployment", "orders-processor"), ("Deployment", "websocket"),
                     ("Deployment", "orders-operations"), ("Service", "orders-operations"),
                     ("Service", "orders-intake"), ("Service", "websocket"), ("ScaledObject", "orders-processor"),
                     ("TriggerAuthentication", "servicebus-workload-identity"), ("Ingress", "orders"),
                     ("ConfigMap", "orders-settings")]:
        assert expected in kinds, f"k8s/{target} renders no {expected[0]} {expected[1]}"


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_builtin_objects_validate_strictly(rendered: dict[str, list[dict]], target: str) -> None:
    failures = {f"{o['kind']}/{o['metadata']['name']}": errors
                for o in builtin_objects(rendered[target]) if (errors := validate_builtin(o))}
    assert not failures, f"k8s/{target} against Kubernetes {KUBERNETES_VERSION}: {failures}"


def test_strict_validation_refuses_an_unknown_field(rendered: dict[str, list[dict]]) -> None:
    deployment = copy.deepcopy(next(o for o in rendered["overlays/prod"] if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {"runAsNonRoot": True}
    assert validate_builtin(deployment), "a misspelt field passed validation: the check is not strict"


def test_every_kind_is_checked_by_some_schema(rendered: dict[str, list[dict]]) -> None:
    """kubernetes-validate passes custom resources silently: make sure each kind is one it knows, a KEDA
    kind, or one checked elsewhere, so nothing slips through unvalidated."""
    for target, objects in rendered.items():
        for obj in builtin_objects(objects):
            with pytest.raises(kubernetes_validate.ValidationError):
                broken = copy.deepcopy(obj)
                broken["unexpectedTopLevelField"] = 1
                kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_keda_objects_validate_against_kedas_schema(rendered, keda_validator, target: str) -> None:
    keda_objects = [o for o in rendered[target] if o["apiVersion"] == KEDA_API]
    assert {o["kind"] for o in keda_objects} == {"ScaledObject", "TriggerAuthentication"}
    results = keda_validator(keda_objects)
    assert len(results) == len(keda_objects)
    assert not {key: errors for key, errors in results.items() if errors}, results


def test_keda_validation_refuses_unknown_and_mistyped_fields(rendered, keda_validator) -> None:
    scaled = copy.deepcopy(next(o for o in rendered["overlays/prod"] if o["kind"] == "ScaledObject"))
    scaled["spec"]["maxReplicas"] = 3  # the HPA's name for it, not KEDA's
    scaled["spec"]["triggers"][0]["authenticationRef"]["nmae"] = "x"
    auth = copy.deepcopy(next(o for o in rendered["overlays/prod"] if o["kind"] == "TriggerAuthentication"))
    auth["spec"]["podIdentity"]["provider"] = "azure"  # removed from KEDA; only azure-workload remains
    auth["metadata"]["name"] = "broken-auth"
    results = keda_validator([scaled, auth])
    scaled_errors = " ".join(results[("ScaledObject", scaled["metadata"]["name"])])
    assert 'unknown field "maxReplicas"' in scaled_errors
    assert 'unknown field "nmae"' in scaled_errors
    assert "/spec/podIdentity/provider: enum" in " ".join(results[("TriggerAuthentication", "broken-auth")])


def _structural(schema: dict) -> dict:
    """The CRD schema as the API server applies it to unknown fields: an object schema with properties and
    neither additionalProperties nor x-kubernetes-preserve-unknown-fields prunes (here: refuses) others."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {k: _structural(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    if isinstance(schema.get("items"), dict):
        schema["items"] = _structural(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _structural(schema["additionalProperties"])
    return schema


def _crd_schemas() -> dict[str, dict]:
    schemas = {}
    for path in sorted(KEDA_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            if f"{crd['spec']['group']}/{version['name']}" == KEDA_API:
                schemas[crd["spec"]["names"]["kind"]] = _structural(version["schema"]["openAPIV3Schema"])
    return schemas


@pytest.mark.skipif(not KEDA_CRDS.is_dir(), reason=f"KEDA's CRDs are not next to the project ({KEDA_CRDS}); "
                    "that copy exists only on the developers' machines and in CI")
@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_keda_objects_validate_against_kedas_crds(rendered: dict[str, list[dict]], target: str) -> None:
    schemas = _crd_schemas()
    assert {"ScaledObject", "TriggerAuthentication"} <= schemas.keys()
    for obj in (o for o in rendered[target] if o["apiVersion"] == KEDA_API):
        # The API server checks metadata itself; the CRD schema describes only apiVersion, kind, spec, status.
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in jsonschema.Draft7Validator(schemas[obj["kind"]]).iter_errors(obj)]
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']} in k8s/{target}: {errors}"


@pytest.mark.skipif(not KEDA_CRDS.is_dir(), reason=f"KEDA's CRDs are not next to the project ({KEDA_CRDS})")
def test_crd_cross_check_refuses_unknown_fields(rendered: dict[str, list[dict]]) -> None:
    scaled = copy.deepcopy(next(o for o in rendered["overlays/prod"] if o["kind"] == "ScaledObject"))
    scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behaviour"] = {}
    assert list(jsonschema.Draft7Validator(_crd_schemas()["ScaledObject"]).iter_errors(scaled))
