"""The values that matter in the rendered manifests: the scaler watches the app's queue, identities
instead of keys, hardened containers, functions split between Deployments, routes and network policy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ["base", "overlays/dev", "overlays/prod"]
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
INTAKE_FUNCTIONS = {"submit_order", "get_order_status", "list_products", "health", "readiness", "openapi_document"}
PROCESSOR_FUNCTIONS = {"process_order", "handle_dead_lettered_order"}
OPERATIONS_FUNCTIONS = {"list_dead_letters", "show_dead_letter", "replay_dead_letter", "repair_dead_letter",
                        "discard_dead_letter"}
# Markers of a credential in a connection string or URL.
KEY_MARKERS = re.compile(r"SharedAccessKey=|SharedAccessSignature|AccountKey=|Password=|Pwd=|://[^/@\s]*:[^/@\s]+@",
                         re.IGNORECASE)


def one(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and
               (o["metadata"]["name"] == name or (kind == "ConfigMap" and o["metadata"]["name"].rsplit("-", 1)[0] == name))]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def settings(objects: list[dict]) -> dict[str, str]:
    return one(objects, "ConfigMap", "orders-settings")["data"]


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@pytest.mark.parametrize("target", TARGETS)
def test_scaler_watches_the_queue_and_namespace_the_app_uses(rendered, target: str) -> None:
    objects = rendered[target]
    app = settings(objects)
    scaled = one(objects, "ScaledObject", "orders-processor")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "azure-servicebus"
    assert trigger["metadata"]["queueName"] == app["ORDERS_QUEUE"] == "orders"
    namespace_fqdn = app["ServiceBusConnection__fullyQualifiedNamespace"]
    assert namespace_fqdn == f"{trigger['metadata']['namespace']}.servicebus.windows.net"
    assert int(trigger["metadata"]["messageCount"]) > 0
    assert int(trigger["metadata"]["activationMessageCount"]) >= 0
    assert scaled["spec"]["scaleTargetRef"]["name"] == "orders-processor"
    # The processor reads that very ConfigMap.
    processor = pod_specs(objects)["orders-processor"]["containers"][0]
    assert {"name": one(objects, "ConfigMap", "orders-settings")["metadata"]["name"]} in [
        ref["configMapRef"] for ref in processor["envFrom"]]


def test_overlays_point_the_scaler_at_their_own_namespace(rendered) -> None:
    namespaces = {target: one(rendered[target], "ScaledObject", "orders-processor")["spec"]["triggers"][0]
                  ["metadata"]["namespace"] for target in ("overlays/dev", "overlays/prod")}
    assert namespaces == {"overlays/dev": "sb-orders-dev", "overlays/prod": "sb-orders-prod"}


@pytest.mark.parametrize("target", TARGETS)
def test_scaler_authenticates_with_workload_identity(rendered, target: str) -> None:
    objects = rendered[target]
    scaled = one(objects, "ScaledObject", "orders-processor")
    auth_name = scaled["spec"]["triggers"][0]["authenticationRef"]["name"]
    auth = one(objects, "TriggerAuthentication", auth_name)
    assert auth["spec"]["podIdentity"]["provider"] == "azure-workload"
    assert GUID.match(auth["spec"]["podIdentity"]["identityId"])
    assert set(auth["spec"]) == {"podIdentity"}, "no secrets or environment in the TriggerAuthentication"
    assert "connectionFromEnv" not in scaled["spec"]["triggers"][0]["metadata"]


def test_replica_cap_is_explained_by_session_concurrency() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    sessions = host["extensions"]["serviceBus"]["maxConcurrentSessions"]
    keda = (ROOT / "k8s" / "base" / "keda.yaml").read_text()
    comment_before_cap = keda.split("maxReplicaCount:")[0].rsplit("minReplicaCount:", 1)[1]
    assert "sessions" in comment_before_cap and f"maxConcurrentSessions ({sessions})" in comment_before_cap


@pytest.mark.parametrize("target", TARGETS)
def test_no_key_or_connection_string_anywhere(rendered, target: str) -> None:
    objects = rendered[target]
    assert not [o for o in objects if o["kind"] == "Secret"], "secrets come from Key Vault, never from manifests"
    leaks = [(o["kind"], o["metadata"]["name"], s) for o in objects for s in strings(o) if KEY_MARKERS.search(s)]
    assert not leaks
    app = settings(objects)
    assert "ServiceBusConnection" not in app, "Service Bus is reached by namespace and identity, not a connection string"
    assert app["SQL_ENTRA_AUTH"] == "true" and app["REDIS_ENTRA_AUTH"] == "true"
    assert app["REDIS_URL"].startswith("rediss://"), "Azure Managed Redis with TLS"
    assert "Encrypt=yes" in app["SQL_URL"] and "@" in app["SQL_URL"].split("//", 1)[1][:1], "no SQL user or password"
    for name, spec in pod_specs(objects).items():
        for container in spec["containers"]:
            for var in container.get("env", []):
                assert "value" not in var or not var["name"].endswith(("SECRET", "KEY", "PASSWORD")), (
                    f"{name}: {var['name']} is set literally; take it from Key Vault")


def test_key_check_catches_a_connection_string(rendered) -> None:
    assert KEY_MARKERS.search("Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b")
    assert KEY_MARKERS.search("Server=tcp:x;Database=y;User ID=u;Password=p")
    assert KEY_MARKERS.search("rediss://:secret@cache:6380/0")
    assert not KEY_MARKERS.search(settings(rendered["overlays/prod"])["REDIS_URL"])


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_is_hardened_and_bounded(rendered, target: str) -> None:
    for name, spec in pod_specs(rendered[target]).items():
        pod_security = spec.get("securityContext", {})
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in spec["containers"] + spec.get("initContainers", []):
            security = {**pod_security, **container.get("securityContext", {})}
            where = f"{target} {name}/{container['name']}"
            assert security.get("runAsNonRoot") is True and security.get("runAsUser", 0) > 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["limits"].keys(), where
            assert {"cpu", "memory"} <= resources["requests"].keys(), where
            assert {"livenessProbe", "readinessProbe", "startupProbe"} <= container.keys(), where
            assert ":" in container["image"] and not container["image"].endswith(":latest") or target == "base", where
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root filesystem needs a writable /tmp"


@pytest.mark.parametrize("target", TARGETS)
def test_pods_use_their_own_workload_identity(rendered, target: str) -> None:
    objects = rendered[target]
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    client_ids = {}
    for name, spec in pod_specs(objects).items():
        deployment = one(objects, "Deployment", name)
        assert deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true", name
        account = accounts[spec["serviceAccountName"]]
        client_ids[name] = account["metadata"]["annotations"]["azure.workload.identity/client-id"]
        assert GUID.match(client_ids[name]), name
    assert len(set(client_ids.values())) == 4, "intake, processor, operations and WebSocket each have an identity"
    # The Key Vault CSI driver exchanges the pod's token for the identity it names: it must be the pod's.
    providers = {o["metadata"]["name"]: o for o in objects if o["kind"] == "SecretProviderClass"}
    for name, spec in pod_specs(objects).items():
        for volume in spec.get("volumes", []):
            if "csi" in volume:
                provider = providers[volume["csi"]["volumeAttributes"]["secretProviderClass"]]
                assert provider["spec"]["provider"] == "azure"
                assert provider["spec"]["parameters"]["usePodIdentity"] == "false"
                assert provider["spec"]["parameters"]["clientID"] == client_ids[name], name


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_reach_the_pods_from_key_vault(rendered, target: str) -> None:
    objects = rendered[target]
    synced = {s["secretName"]: {d["key"] for d in s["data"]}
              for o in objects if o["kind"] == "SecretProviderClass" for s in o["spec"]["secretObjects"]}
    specs = pod_specs(objects)
    for name in ("orders-intake", "websocket"):
        env = env_of(specs[name]["containers"][0])
        ref = env["NOTIFY_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] in synced[ref["name"]], name
    ref = env_of(specs["websocket"]["containers"][0])["WS_INTERNAL_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] in synced[ref["name"]]


@pytest.mark.parametrize("target", TARGETS)
def test_functions_are_split_between_intake_processor_and_operations(rendered, target: str) -> None:
    specs = pod_specs(rendered[target])

    def selected(name: str) -> set[str]:
        env = env_of(specs[name]["containers"][0])
        names = [env[f"AzureFunctionsJobHost__functions__{i}"]["value"]
                 for i in range(len(env)) if f"AzureFunctionsJobHost__functions__{i}" in env]
        assert len(names) == len([k for k in env if k.startswith("AzureFunctionsJobHost__functions__")]), (
            f"{name}: the function indexes must run 0..N without gaps")
        return set(names)

    assert selected("orders-intake") == INTAKE_FUNCTIONS
    assert selected("orders-processor") == PROCESSOR_FUNCTIONS
    assert selected("orders-operations") == OPERATIONS_FUNCTIONS


@pytest.mark.parametrize("target", TARGETS)
def test_availability_and_graceful_termination(rendered, target: str) -> None:
    objects = rendered[target]
    budgets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodDisruptionBudget"}
    for name, spec in pod_specs(objects).items():
        labels = one(objects, "Deployment", name)["spec"]["selector"]["matchLabels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"] == labels, name
        zones = [c for c in spec["topologySpreadConstraints"] if c["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zones and zones[0]["labelSelector"]["matchLabels"] == labels, name
    websocket = pod_specs(objects)["websocket"]
    pre_stop = int(websocket["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    # preStop, then closing sockets (1012) and deregistering, with room to spare.
    assert websocket["terminationGracePeriodSeconds"] >= pre_stop + 30


@pytest.mark.parametrize("target", TARGETS)
def test_autoscaling_for_each_deployment(rendered, target: str) -> None:
    objects = rendered[target]
    hpas = {o["spec"]["scaleTargetRef"]["name"]: o for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    assert set(hpas) == {"orders-intake", "websocket"}, "the processor's HPA is KEDA's; operations keep 2 replicas"
    for hpa in hpas.values():
        assert hpa["spec"]["minReplicas"] >= 1 and hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    scaled = one(objects, "ScaledObject", "orders-processor")["spec"]
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert "replicas" not in one(objects, "Deployment", "orders-processor")["spec"]


@pytest.mark.parametrize("target", TARGETS)
def test_ingress_routes_and_websocket_timeouts(rendered, target: str) -> None:
    objects = rendered[target]
    ingress = one(objects, "Ingress", "orders")
    routes = {p["path"]: (p["pathType"], p["backend"]["service"]["name"])
              for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert routes == {"/api": ("Prefix", "orders-intake"), "/api/dead-letters": ("Prefix", "orders-operations"),
                      "/ws": ("Prefix", "websocket"), "/": ("Prefix", "websocket")}
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    # A per-client rate and connection limit in front of the app's own (answered 429, like the app's).
    assert int(annotations["nginx.ingress.kubernetes.io/limit-rps"]) > 0
    assert int(annotations["nginx.ingress.kubernetes.io/limit-connections"]) > 0
    assert annotations["nginx.ingress.kubernetes.io/limit-req-status-code"] == "429"
    internal = one(objects, "Ingress", "orders-internal-paths")
    assert internal["metadata"]["annotations"]["nginx.ingress.kubernetes.io/denylist-source-range"] == "0.0.0.0/0,::/0"
    assert [p["path"] for r in internal["spec"]["rules"] for p in r["http"]["paths"]] == ["/internal", "/api/internal"]
    assert {r["host"] for r in internal["spec"]["rules"]} == {r["host"] for r in ingress["spec"]["rules"]}
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert set(services) == {"orders-intake", "orders-operations", "websocket"}


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies(rendered, target: str) -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in rendered[target] if o["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny

    def ingress_rules_for(app: str) -> list[dict]:
        return [rule for spec in policies.values() if "ingress" in spec
                and spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == app
                for rule in spec["ingress"]]

    assert not ingress_rules_for("orders-processor"), "nothing calls the processor"
    (websocket_rule,) = ingress_rules_for("websocket")
    assert websocket_rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    peers = websocket_rule["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "websocket"}}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "app-routing-system"}}} in peers
    assert len(peers) == 2, "only the ingress controller and the other WebSocket pods"
    for rule in ingress_rules_for("orders-intake"):
        for peer in rule["from"]:
            assert "ipBlock" not in peer, "the intake is reached through the ingress controller only"
    (operations_rule,) = ingress_rules_for("orders-operations")
    assert operations_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "app-routing-system"}}}]


def container_environment(objects: list[dict], deployment: str) -> dict[str, str]:
    """The environment the container starts with: its ConfigMaps, literal values (with $(VAR) expanded),
    and a stand-in for each value the pod gets at run time (Key Vault secrets, the pod's address)."""
    spec = pod_specs(objects)[deployment]
    container = spec["containers"][0]
    maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
        else:
            env[var["name"]] = f"run-time-value-of-{var['name']}"
    # Set by the workload identity webhook from the ServiceAccount's annotation.
    env["AZURE_CLIENT_ID"] = next(o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] ==
                                  spec["serviceAccountName"])["metadata"]["annotations"]["azure.workload.identity/client-id"]
    return env


@pytest.mark.parametrize("deployment", ["orders-intake", "orders-processor", "orders-operations"])
def test_function_app_accepts_the_deployed_settings(rendered, deployment: str) -> None:
    from orders.settings import OrderSettings

    objects = rendered["overlays/prod"]
    settings = OrderSettings.model_validate(container_environment(objects, deployment))
    assert settings.servicebus_connection is None
    assert settings.servicebus_namespace == "sb-orders-prod.servicebus.windows.net"
    assert settings.sql_entra_auth and settings.redis_entra_auth
    assert settings.orders_queue == "orders" and settings.order_status_queue == "order-status"
    assert settings.sql_url.startswith("mssql+pyodbc://@sql-orders-prod.database.windows.net/")


def test_websocket_service_accepts_the_deployed_settings(rendered) -> None:
    from websocket_service.settings import WebSocketSettings

    env = container_environment(rendered["overlays/prod"], "websocket")
    env["POD_IP"] = "10.244.1.7"
    env["WS_INTERNAL_URL"] = env["WS_INTERNAL_URL"].replace("run-time-value-of-POD_IP", env["POD_IP"])
    settings = WebSocketSettings.model_validate(env)
    assert settings.host == "0.0.0.0" and settings.port == 8080
    assert settings.advertised_internal_url == "http://10.244.1.7:8080", "peers reach the pod by its address"
    assert settings.servicebus_configured and settings.servicebus_connection is None
    assert settings.redis_entra_auth and settings.order_status_queue == "order-status"
    assert settings.status_api_url == "http://orders-intake/api" and settings.proxy_api is False
    assert settings.internal_secret.get_secret_value() == "run-time-value-of-WS_INTERNAL_SECRET"


# The Azure Key Vault provider's parameters (no schema ships for this CRD, so the shape is checked here).
SPC_SPEC_FIELDS = {"provider", "parameters", "secretObjects"}
SPC_AZURE_PARAMETERS = {"usePodIdentity", "useVMManagedIdentity", "userAssignedIdentityID", "clientID",
                        "keyvaultName", "cloudName", "objects", "tenantId"}


@pytest.mark.parametrize("target", TARGETS)
def test_secret_provider_classes_have_the_azure_providers_shape(rendered, target: str) -> None:
    import yaml

    for provider in (o for o in rendered[target] if o["kind"] == "SecretProviderClass"):
        name = provider["metadata"]["name"]
        assert provider["apiVersion"] == "secrets-store.csi.x-k8s.io/v1", name
        assert set(provider["spec"]) <= SPC_SPEC_FIELDS, name
        parameters = provider["spec"]["parameters"]
        assert set(parameters) <= SPC_AZURE_PARAMETERS, f"{name}: unknown parameters {set(parameters) - SPC_AZURE_PARAMETERS}"
        assert all(isinstance(v, str) for v in parameters.values()), f"{name}: parameters are strings"
        assert GUID.match(parameters["tenantId"]) and parameters["keyvaultName"], name
        objects = [yaml.safe_load(item) for item in yaml.safe_load(parameters["objects"])["array"]]
        names = {o["objectName"] for o in objects}
        assert all(o["objectType"] == "secret" for o in objects), name
        for synced in provider["spec"]["secretObjects"]:
            assert synced["type"] == "Opaque"
            assert {d["objectName"] for d in synced["data"]} <= names, f"{name} syncs an object it does not fetch"
