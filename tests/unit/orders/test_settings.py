"""Settings come from the environment (Functions app settings) and fail loudly when incomplete."""

import pytest
from pydantic import ValidationError

from orders.settings import OrderSettings


SIGN_IN = {"AUTH_ISSUER": "https://login.microsoftonline.com/tenant/v2.0", "AUTH_AUDIENCE": "api://orders"}


def settings(**env: str) -> OrderSettings:
    return OrderSettings.model_validate({**SIGN_IN, **env})


def test_sign_in_settings_are_required_and_the_error_says_what_to_set():
    with pytest.raises(ValidationError, match="AUTH_ISSUER .*AUTH_AUDIENCE"):
        OrderSettings.model_validate({"ServiceBusConnection": "x"})


def test_a_connection_string_or_a_namespace_is_required_and_the_error_says_which_keys():
    with pytest.raises(ValidationError, match="ServiceBusConnection__fullyQualifiedNamespace"):
        settings(ServiceBusConnection="", ServiceBusConnection__fullyQualifiedNamespace=" ")


def test_in_azure_an_empty_connection_string_falls_back_to_the_namespace_and_identity():
    configured = settings(ServiceBusConnection="", ServiceBusConnection__fullyQualifiedNamespace="ns.servicebus.windows.net",
                          AZURE_CLIENT_ID="")

    assert configured.servicebus_connection is None
    assert configured.servicebus_namespace == "ns.servicebus.windows.net"
    assert configured.azure_client_id is None


def test_defaults_are_the_local_ones_and_the_accepted_record_lives_at_least_a_day():
    configured = settings(ServiceBusConnection="Endpoint=sb://localhost:5682;SharedAccessKeyName=k;SharedAccessKey=v;")

    assert (configured.orders_queue, configured.order_status_queue) == ("orders", "order-status")
    assert configured.sql_url.startswith("sqlite:///")
    with pytest.raises(ValidationError, match="86400"):
        settings(ServiceBusConnection="x", CORRELATION_TTL_SECONDS="3600")
