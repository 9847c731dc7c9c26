"""host.json and local.settings.sample.json: valid, with the session settings the processor depends on,
and listing every setting the code reads, each with a note."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMESPAN = re.compile(r"^(?:(?P<d>\d+)\.)?(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d{1,7})?)$")
# Read by the Functions host and worker rather than by the project's code.
HOST_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "PYTHON_SCRIPT_FILE_NAME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"}


def seconds(timespan: str) -> float:
    match = TIMESPAN.match(timespan)
    assert match, f"{timespan!r} is not a [d.]hh:mm:ss TimeSpan"
    return int(match["d"] or 0) * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60 + float(match["s"])


@pytest.fixture(scope="module")
def host() -> dict:
    return json.loads((ROOT / "host.json").read_text())


@pytest.fixture(scope="module")
def sample() -> dict:
    return json.loads((ROOT / "local.settings.sample.json").read_text())


def test_host_json_targets_the_v4_host_and_bundle(host: dict) -> None:
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    assert host["extensions"]["http"]["routePrefix"] == "api"
    assert seconds(host["functionTimeout"]) > 0
    assert host["logging"]["logLevel"]["default"] in {"Information", "Warning"}


def test_session_settings_keep_orders_fifo_per_customer(host: dict) -> None:
    service_bus = host["extensions"]["serviceBus"]
    assert {"maxConcurrentSessions", "maxConcurrentCallsPerSession", "sessionIdleTimeout", "autoCompleteMessages",
            "maxAutoLockRenewalDuration", "prefetchCount"} <= service_bus.keys()
    # One message at a time per session: a customer's orders are processed in the order they were sent.
    assert service_bus["maxConcurrentCallsPerSession"] == 1
    assert service_bus["maxConcurrentSessions"] >= 1
    # Completed on success, abandoned on an exception, dead-lettered after MaxDeliveryCount.
    assert service_bus["autoCompleteMessages"] is True
    # The lock is renewed for as long as a function may run, so a slow order is not redelivered mid-way.
    assert seconds(service_bus["maxAutoLockRenewalDuration"]) >= seconds(host["functionTimeout"])
    assert 0 < seconds(service_bus["sessionIdleTimeout"]) <= 60


def test_a_delivery_gives_up_retrying_well_inside_function_timeout_and_the_lock_renewal(host: dict,
                                                                                        sample: dict) -> None:
    """The processing triggers retry transient failures for a budget, then the message goes back to the
    broker: the budget plus one longest pause must end before functionTimeout fails the invocation (and
    restarts the worker) and before the lock renewal stops."""
    from function_app.retries import BASE_SETTING, BUDGET_SETTING, MAX_SETTING, RetryPolicy

    values = sample["Values"]
    policy = RetryPolicy(float(values[BUDGET_SETTING]), float(values[BASE_SETTING]), float(values[MAX_SETTING]))
    assert policy == RetryPolicy(), "the sample shows the defaults"
    longest = policy.budget_seconds + policy.max_seconds
    assert longest <= 0.9 * seconds(host["functionTimeout"])
    assert longest <= 0.9 * seconds(host["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"])


def test_local_host_reads_host_json_as_written(host: dict) -> None:
    """The local Functions host honours the same keys (a misspelt key would silently keep its default)."""
    from local_functions_host.host_config import load_host_config

    config = load_host_config(ROOT, environ={})
    service_bus = host["extensions"]["serviceBus"]
    assert config.route_prefix == "api"
    assert config.service_bus.max_concurrent_sessions == service_bus["maxConcurrentSessions"]
    assert config.service_bus.max_concurrent_calls_per_session == service_bus["maxConcurrentCallsPerSession"]
    assert config.service_bus.auto_complete_messages is service_bus["autoCompleteMessages"]
    assert config.service_bus.max_auto_lock_renewal_duration == seconds(service_bus["maxAutoLockRenewalDuration"])
    assert config.service_bus.session_idle_timeout == seconds(service_bus["sessionIdleTimeout"])
    assert config.service_bus.prefetch_count == service_bus["prefetchCount"]
    assert config.function_timeout == seconds(host["functionTimeout"])


def _contract_settings() -> set[str]:
    text = (ROOT / "docs" / "contracts.md").read_text()
    table = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    return {m for m in re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE)}


def _settings_read_by_code() -> set[str]:
    """Aliases of the function app's settings object plus any environment variable read directly."""
    from orders.settings import OrderSettings

    names = set()
    for field in OrderSettings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.add(choices[0] if choices else alias)
    direct = re.compile(r"""(?:os\.environ(?:\.get)?\s*[\[(]|os\.getenv\s*\()\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")
    for package in ("function_app", "orders"):
        for source in (ROOT / package).rglob("*.py"):
            names |= set(direct.findall(source.read_text()))
    return names


def test_sample_lists_every_setting_with_a_note(sample: dict) -> None:
    assert sample["IsEncrypted"] is False
    values, notes = sample["Values"], sample["_notes"]
    assert all(isinstance(v, str) for v in values.values()), "app settings are strings"
    missing = (_settings_read_by_code() | _contract_settings() | HOST_SETTINGS) - values.keys()
    assert not missing, f"settings read but not in local.settings.sample.json: {sorted(missing)}"
    assert set(notes) - {"_about"} == set(values), "one note per setting, none for a setting that is gone"
    assert all(len(note.split()) >= 5 for note in notes.values())
    assert values["PYTHON_SCRIPT_FILE_NAME"] == "functions_entry.py" and (ROOT / "functions_entry.py").is_file()
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_sample_points_at_the_local_defaults(sample: dict) -> None:
    values = sample["Values"]
    assert "127.0.0.1:5682" in values["ServiceBusConnection"] and "UseDevelopmentEmulator=true" in values["ServiceBusConnection"]
    assert values["REDIS_URL"] == "redis://127.0.0.1:6380/0"
    assert values["SQL_URL"].startswith("sqlite:///")
    assert values["NOTIFY_PUBLIC_URL"] == "ws://127.0.0.1:8080/ws"
    assert values["SQL_ENTRA_AUTH"] == values["REDIS_ENTRA_AUTH"] == "false"
    assert sample["Host"]["LocalHttpPort"] == 7071


def test_sample_settings_build_the_apps_settings(sample: dict) -> None:
    from orders.settings import OrderSettings

    values = {k: v for k, v in sample["Values"].items() if v != ""}
    settings = OrderSettings.model_validate(values)
    assert settings.orders_queue == "orders" and settings.correlation_ttl_seconds >= 86_400


def test_local_host_ignores_the_notes(sample: dict, tmp_path: Path) -> None:
    from local_functions_host.app_settings import apply_local_settings

    shutil.copy(ROOT / "local.settings.sample.json", tmp_path / "local.settings.json")
    environ: dict[str, str] = {}
    applied = apply_local_settings(tmp_path, environ)
    assert set(applied.applied) == set(sample["Values"])
    assert environ == sample["Values"]
    assert applied.host == sample["Host"]
