"""Cross-checks between infra/ (Bicep, evaluated by bicep_model), k8s/ (rendered overlays) and the app's own
assumptions. Each check returns the problems it finds, so a test can show that it finds a planted mistake."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bicep_model import UNKNOWN, Template
from test_manifest_values import one, settings

QUEUES = "Microsoft.ServiceBus/namespaces/queues"
IDENTITIES = "Microsoft.ManagedIdentity/userAssignedIdentities"
FEDERATIONS = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"

#: Which queue roles each function needs (what it sends or receives), by function name.
FUNCTION_QUEUE_ROLES = {
    "submit_order": {("orders", "sender")},
    "process_order": {("orders", "receiver"), ("order-status", "sender")},
    "handle_dead_lettered_order": {("orders", "receiver"), ("order-status", "sender")},
    "replay_dead_letter": {("orders", "sender"), ("order-status", "sender")},
    "repair_dead_letter": {("orders", "sender"), ("order-status", "sender")},
}
#: The WebSocket service is not a function app: it consumes status events.
WEBSOCKET_QUEUE_ROLES = {("order-status", "receiver")}


def _duration_seconds(iso: str) -> float:
    """PT1M, PT10M, PT30S, P14D → seconds (what the templates and the broker's config use)."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", iso)
    if not match:
        raise ValueError(f"not an ISO 8601 duration: {iso}")
    days, hours, minutes, seconds = (float(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def queue_problems(template: Template, root: Path, objects: list[dict]) -> list[str]:
    """The queues exist with the names the apps are configured with, and with the properties the function
    triggers, the retry budget and the local broker assume."""
    problems: list[str] = []
    queues = {q["name"]: q.get("properties", {}) for q in template.resources_of(QUEUES)}
    app_settings = settings(objects)
    for setting in ("ORDERS_QUEUE", "ORDER_STATUS_QUEUE"):
        if app_settings.get(setting) not in queues:
            problems.append(f"{setting}={app_settings.get(setting)} names no queue in infra/")
    local = {q["name"]: q for q in json.loads((root / "localbus" / "default_config.json").read_text())["queues"]}
    orders = queues.get(app_settings.get("ORDERS_QUEUE", "orders"), {})
    status = queues.get(app_settings.get("ORDER_STATUS_QUEUE", "order-status"), {})
    triggers = _service_bus_triggers()
    if orders.get("requiresSession") != triggers["process_order"]:
        problems.append(f"queue orders: requiresSession is {orders.get('requiresSession')} but the process_order "
                        f"trigger has is_sessions_enabled={triggers['process_order']}; the host could not bind it")
    expectations = [
        (orders, "orders", "requiresSession", True, "process_order is a session trigger (FIFO per customer)"),
        (orders, "orders", "requiresDuplicateDetection", True, "the message id (correlationId) deduplicates resends"),
        (orders, "orders", "enablePartitioning", False, "intake batches orders of several customers together"),
        (status, "order-status", "requiresSession", False, "WebSocket instances are competing consumers"),
    ]
    for properties, name, key, wanted, why in expectations:
        if properties.get(key) != wanted:
            problems.append(f"queue {name}: {key} must be {wanted} ({why}), infra/ has {properties.get(key)}")
    for name, properties in (("orders", orders), ("order-status", status)):
        mine = local.get(name, {})
        for key in ("requiresSession", "requiresDuplicateDetection", "maxDeliveryCount", "lockDuration",
                    "duplicateDetectionHistoryTimeWindow"):
            if key in mine and properties.get(key) != mine[key]:
                problems.append(f"queue {name}: {key} is {properties.get(key)} in infra/ but {mine[key]} in "
                                "localbus/default_config.json: local runs would not behave as Azure does")
        lock = properties.get("lockDuration")
        if isinstance(lock, str) and _duration_seconds(lock) > 300:
            problems.append(f"queue {name}: lockDuration {lock} is above Service Bus's 5 minutes")
    if isinstance(orders.get("maxDeliveryCount"), int) and orders["maxDeliveryCount"] < 2:
        problems.append("queue orders: maxDeliveryCount below 2 dead-letters an order at the first outage")
    return problems


def name_problems(template: Template, objects: list[dict], namespace: str) -> list[str]:
    """Every Azure host name and resource name a manifest uses is one infra/ creates."""
    problems: list[str] = []
    names, location = template.variables["names"], template.parameters["location"]
    app_settings = settings(objects)
    host_settings = one(objects, "ConfigMap", "functions-host-settings")["data"]
    expected = {
        "ServiceBusConnection__fullyQualifiedNamespace": f"{names['serviceBus']}.servicebus.windows.net",
        "SQL_URL host": f"{names['sqlServer']}.database.windows.net",
        "SQL_URL database": names["sqlDatabase"],
        "REDIS_URL host": f"{names['redis']}.{location}.redis.azure.net",
        "REDIS_URL port": 10000,
        "AzureWebJobsStorage__accountName": names["storage"],
        "namespace": template.variables["namespace"],
    }
    sql, redis = urlsplit(app_settings.get("SQL_URL", "")), urlsplit(app_settings.get("REDIS_URL", ""))
    actual = {
        "ServiceBusConnection__fullyQualifiedNamespace":
            app_settings.get("ServiceBusConnection__fullyQualifiedNamespace"),
        "SQL_URL host": sql.hostname,
        "SQL_URL database": sql.path.lstrip("/"),
        "REDIS_URL host": redis.hostname,
        "REDIS_URL port": redis.port,
        "AzureWebJobsStorage__accountName": host_settings.get("AzureWebJobsStorage__accountName"),
        "namespace": namespace,
    }
    for key, wanted in expected.items():
        if actual[key] != wanted:
            problems.append(f"{key}: the manifests say {actual[key]}, infra/ creates {wanted}")
    for provider in (o for o in objects if o["kind"] == "SecretProviderClass"):
        if provider["spec"]["parameters"]["keyvaultName"] != names["keyVault"]:
            problems.append(f"SecretProviderClass {provider['metadata']['name']}: Key Vault "
                            f"{provider['spec']['parameters']['keyvaultName']}, infra/ creates {names['keyVault']}")
    images = {c["image"] for o in objects if o["kind"] == "Deployment"
              for c in o["spec"]["template"]["spec"]["containers"]}
    for image in images:
        if not image.startswith(f"{names['registry']}.azurecr.io/"):
            problems.append(f"image {image} is not in the registry infra/ creates ({names['registry']}.azurecr.io)")
    return problems


def identity_problems(template: Template, objects: list[dict]) -> list[str]:
    """One identity per workload, each federated to a service account the manifests have (and every
    Deployment's service account has one)."""
    problems: list[str] = []
    workloads = template.variables["workloads"]
    federated = {f["properties"]["subject"] for f in template.resources_of(FEDERATIONS)}
    identities = [i["name"] for i in template.resources_of(IDENTITIES)]
    if len(set(identities)) != len(workloads):
        problems.append(f"identities {identities} are not one per workload {[w['name'] for w in workloads]}")
    accounts = {(o["metadata"].get("namespace"), o["metadata"]["name"])
                for o in objects if o["kind"] == "ServiceAccount"}
    used = {(o["metadata"].get("namespace"), o["spec"]["template"]["spec"]["serviceAccountName"])
            for o in objects if o["kind"] == "Deployment"}
    for workload in workloads:
        namespace, _, account = workload["serviceAccount"].partition(":")
        if f"system:serviceaccount:{namespace}:{account}" not in federated:
            problems.append(f"{workload['name']}: no federated credential for {workload['serviceAccount']}")
        if namespace != "kube-system" and (namespace, account) not in accounts:
            problems.append(f"{workload['name']}: the manifests have no service account {account} in {namespace}")
    subjects = {f"{namespace}:{account}" for namespace, account in used}
    for subject in subjects - {w["serviceAccount"] for w in workloads}:
        problems.append(f"service account {subject} runs a Deployment but has no identity in infra/")
    return problems


def role_problems(template: Template, objects: list[dict]) -> list[str]:
    """Each workload holds exactly the queue roles its functions need: no missing role, nothing extra."""
    problems: list[str] = []
    granted: dict[str, set[tuple[str, str]]] = {}
    for grant in template.module("access").variables["queueRoles"]:
        granted.setdefault(grant["workload"], set()).add((grant["queue"], grant["role"]))
    workload_of = {w["serviceAccount"].partition(":")[2]: w["name"] for w in template.variables["workloads"]}
    needed: dict[str, set[tuple[str, str]]] = {"keda": {("orders", "owner")}}
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        workload = workload_of.get(spec["serviceAccountName"])
        if workload is None:
            continue  # identity_problems reports it
        env = {e["name"]: e.get("value") for c in spec["containers"] for e in c.get("env", [])}
        functions = [value for key, value in env.items() if key.startswith("AzureFunctionsJobHost__functions__")]
        roles = set().union(*(FUNCTION_QUEUE_ROLES.get(f, set()) for f in functions)) if functions else set()
        if deployment["metadata"]["name"] == "websocket":
            roles = WEBSOCKET_QUEUE_ROLES
        needed.setdefault(workload, set()).update(roles)
    for workload in sorted(set(granted) | set(needed)):
        missing, extra = needed.get(workload, set()) - granted.get(workload, set()), \
            granted.get(workload, set()) - needed.get(workload, set())
        if missing:
            problems.append(f"{workload}: lacks {sorted(missing)} that its functions use")
        if extra:
            problems.append(f"{workload}: holds {sorted(extra)} that none of its functions uses")
    return problems


def platform_problems(template: Template) -> list[str]:
    """What the issue asks of Redis, SQL and AKS, read from the evaluated templates."""
    problems: list[str] = []
    (database,) = template.module("redis").resources_of("Microsoft.Cache/redisEnterprise/databases")
    redis = database["properties"]
    if redis.get("evictionPolicy") != "NoEviction":
        problems.append(f"Redis evictionPolicy {redis.get('evictionPolicy')}: registry keys could be dropped silently")
    if redis.get("accessKeysAuthentication") != "Disabled":
        problems.append("Redis: access keys must be off (Entra ID only)")
    if redis.get("clientProtocol") != "Encrypted":
        problems.append("Redis: TLS only")
    sql = template.module("sql")
    (server,) = sql.resources_of("Microsoft.Sql/servers")
    (db,) = sql.resources_of("Microsoft.Sql/servers/databases")
    if not server["properties"]["administrators"].get("azureADOnlyAuthentication"):
        problems.append("SQL: Entra-only authentication is off")
    if db["sku"].get("tier") != "BusinessCritical" or not db["properties"].get("zoneRedundant"):
        problems.append("SQL: the database must be Business Critical and zone redundant")
    (cluster,) = template.module("aks").resources_of("Microsoft.ContainerService/managedClusters")
    properties = cluster["properties"]
    for path, wanted in (("oidcIssuerProfile.enabled", True), ("securityProfile.workloadIdentity.enabled", True),
                         ("workloadAutoScalerProfile.keda.enabled", True),
                         ("addonProfiles.azureKeyvaultSecretsProvider.enabled", True),
                         ("ingressProfile.webAppRouting.enabled", True)):
        value: Any = properties
        for part in path.split("."):
            value = value.get(part, UNKNOWN) if isinstance(value, dict) else UNKNOWN
        if value != wanted:
            problems.append(f"AKS: {path} must be {wanted}")
    for pool in properties["agentPoolProfiles"]:
        if pool.get("availabilityZones") != template.parameters["zones"]:
            problems.append(f"AKS node pool {pool['name']}: not spread over the zones {template.parameters['zones']}")
    return problems


def _service_bus_triggers() -> dict[str, bool]:
    """Each Service Bus trigger of the function app and whether it is a session trigger, as the worker indexes
    it (built from the decorated functions: the app itself refuses to be indexed twice in one process)."""
    import azure.functions as func

    from function_app import processing

    functions = [processing.process_order.build(func.AuthLevel.ANONYMOUS),
                 processing.handle_dead_lettered_order.build(func.AuthLevel.ANONYMOUS)]
    return {function.get_function_name(): bool(function.get_trigger().is_sessions_enabled) for function in functions}
