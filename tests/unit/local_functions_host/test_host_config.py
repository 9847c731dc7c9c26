"""host.json and local.settings.json as the local host reads them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from local_functions_host.app_settings import apply_local_settings, resolve_expressions, selected_function_names
from local_functions_host.errors import HostConfigurationError
from local_functions_host.host_config import load_host_config, parse_timespan


def _write_host(root: Path, document: dict) -> None:
    (root / "host.json").write_text(json.dumps(document))


def test_defaults_match_the_functions_host(tmp_path: Path) -> None:
    _write_host(tmp_path, {"version": "2.0"})

    config = load_host_config(tmp_path, {})

    assert config.route_prefix == "api"
    options = config.service_bus
    assert options.max_concurrent_sessions == 8
    assert options.max_concurrent_calls_per_session == 1
    assert options.auto_complete_messages is True
    assert options.max_auto_lock_renewal_duration == 300
    assert options.prefetch_count == 0
    # Unset, the session idle timeout is the client's try timeout (60 s).
    assert options.session_idle_timeout == 60


def test_service_bus_settings_are_read_case_insensitively(tmp_path: Path) -> None:
    _write_host(tmp_path, {
        "version": "2.0",
        "extensions": {
            "http": {"routePrefix": ""},
            "ServiceBus": {
                "MaxConcurrentSessions": 3,
                "maxConcurrentCallsPerSession": 2,
                "sessionIdleTimeout": "00:00:01.500",
                "maxAutoLockRenewalDuration": "00:10:00",
                "autoCompleteMessages": False,
                "prefetchCount": 20,
                "maxConcurrentCalls": 4,
            },
        },
    })

    config = load_host_config(tmp_path, {})

    assert config.route_prefix == ""
    options = config.service_bus
    assert (options.max_concurrent_sessions, options.max_concurrent_calls_per_session) == (3, 2)
    assert options.session_idle_timeout == 1.5
    assert options.max_auto_lock_renewal_duration == 600
    assert options.auto_complete_messages is False
    assert (options.prefetch_count, options.max_concurrent_calls) == (20, 4)


def test_environment_overrides_host_json_like_azure(tmp_path: Path) -> None:
    _write_host(tmp_path, {"version": "2.0", "extensions": {"serviceBus": {"maxConcurrentSessions": 8}}})
    env = {
        "AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentSessions": "2",
        "AzureFunctionsJobHost__functions__1": "b",
        "AzureFunctionsJobHost__functions__0": "a",
    }

    config = load_host_config(tmp_path, env)

    assert config.service_bus.max_concurrent_sessions == 2
    assert config.functions == ("a", "b")
    assert selected_function_names(env) == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:05:00", 300), ("1.00:00:00", 86400), ("00:00:00.250", 0.25), ("-00:00:00.0010000", None), ("00:01", 60)],
)
def test_timespans(text: str, seconds: float | None) -> None:
    assert parse_timespan(text, setting="x") == seconds


def test_bad_values_say_what_to_write(tmp_path: Path) -> None:
    _write_host(tmp_path, {"version": "2.0", "extensions": {"serviceBus": {"sessionIdleTimeout": "5s"}}})
    with pytest.raises(HostConfigurationError, match="hh:mm:ss"):
        load_host_config(tmp_path, {})
    _write_host(tmp_path, {"version": "2.0", "extensions": {"serviceBus": {"maxConcurrentSessions": 0}}})
    with pytest.raises(HostConfigurationError, match="at least 1"):
        load_host_config(tmp_path, {})


def test_missing_host_json_names_the_script_root(tmp_path: Path) -> None:
    with pytest.raises(HostConfigurationError, match="--script-root"):
        load_host_config(tmp_path, {})


def test_local_settings_values_fill_the_environment_but_never_override_it(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False,
        "Values": {"A": "from-file", "B": "from-file", "FLAG": True, "N": 3},
        "Host": {"LocalHttpPort": 7999},
    }))
    env = {"B": "from-env"}

    result = apply_local_settings(tmp_path, env)

    assert env == {"A": "from-file", "B": "from-env", "FLAG": "true", "N": "3"}
    assert result.overridden == ("B",)
    assert result.host["LocalHttpPort"] == 7999


def test_local_settings_are_optional_and_errors_name_the_file(tmp_path: Path) -> None:
    assert apply_local_settings(tmp_path, {}).path is None
    (tmp_path / "local.settings.json").write_text("{not json")
    with pytest.raises(HostConfigurationError, match="local.settings.json is not valid JSON"):
        apply_local_settings(tmp_path, {})


def test_binding_expressions_resolve_from_settings_or_say_which_is_missing() -> None:
    assert resolve_expressions("%ORDERS_QUEUE%/$DeadLetterQueue", {"ORDERS_QUEUE": "orders"}, where="q") == (
        "orders/$DeadLetterQueue"
    )
    with pytest.raises(HostConfigurationError) as failure:
        resolve_expressions("%ORDERS_QUEUE%", {}, where="queueName of function 'process_order'")
    assert "'ORDERS_QUEUE' is not set" in str(failure.value)
    assert "queueName of function 'process_order'" in str(failure.value)


def test_client_retry_options_map_onto_the_python_client(tmp_path: Path) -> None:
    _write_host(tmp_path, {"version": "2.0", "extensions": {"serviceBus": {"clientRetryOptions": {
        "mode": "Exponential", "tryTimeout": "00:00:30", "delay": "00:00:00.500", "maxDelay": "00:00:30",
        "maxRetries": 5,
    }}}})

    options = load_host_config(tmp_path, {}).service_bus

    assert options.client_retry == {
        "retry_total": 5, "retry_backoff_factor": 0.5, "retry_backoff_max": 30, "retry_mode": "exponential",
        "try_timeout": 30,
    }
    assert options.try_timeout == 30
    assert load_host_config(tmp_path.parent / tmp_path.name, {}).service_bus.session_idle_timeout == 30


def test_log_levels_default_function_and_per_function(tmp_path: Path) -> None:
    _write_host(tmp_path, {"version": "2.0", "logging": {"logLevel": {
        "default": "Warning", "Function": "Information", "Function.noisy": "Error", "Host.Results": "None",
    }}})

    levels = load_host_config(tmp_path, {}).log_levels

    assert (levels.default, levels.function, levels.lowest) == (logging.WARNING, logging.INFO, logging.INFO)
    assert levels.for_function("noisy") == logging.ERROR
    assert levels.for_function("other") == logging.INFO
