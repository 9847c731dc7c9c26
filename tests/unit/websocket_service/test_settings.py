"""Settings of the WebSocket service: every key documented, bad values refused with a useful message."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from websocket_service.settings import DEV_NOTIFY_TOKEN_SECRET, WebSocketSettings

DOC = Path(__file__).resolve().parents[3] / "docs" / "websocket-service.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [f.alias for f in WebSocketSettings.model_fields.values() if f"| `{f.alias}` |" not in text]
    assert missing == [], f"document these settings in {DOC.name}: {missing}"


def test_settings_come_from_the_environment_and_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_PORT", "9123")
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "ns.servicebus.windows.net")
    monkeypatch.setenv("WS_INTERNAL_URL", "http://10.1.2.3:8080/")
    settings = WebSocketSettings()
    assert settings.port == 9123 and settings.servicebus_configured
    assert settings.advertised_internal_url == "http://10.1.2.3:8080"
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_empty_secrets_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_INTERNAL_SECRET", "")
    with pytest.raises(ValidationError, match="WS_INTERNAL_SECRET is empty"):
        WebSocketSettings()


def test_with_no_secret_set_a_token_from_the_intake_verifies_at_the_websocket_service(monkeypatch) -> None:
    from service_platform.notify_tokens import NotifyTokenSigner, NotifyTokenVerifier
    from orders.settings import OrderSettings

    monkeypatch.delenv("NOTIFY_TOKEN_SECRET", raising=False)
    intake = OrderSettings.model_validate({"ServiceBusConnection": "Endpoint=sb://localhost:5682;",
                                           "AUTH_ISSUER": "http://127.0.0.1:1", "AUTH_AUDIENCE": "api://orders"})
    service = WebSocketSettings()
    signer = NotifyTokenSigner(intake.notify_token_key_id, intake.notify_token_secret.get_secret_value().encode())
    NotifyTokenVerifier(service.notify_token_keys).verify(signer.issue("cid", ttl_seconds=60), "cid")


def test_the_previous_notify_key_is_accepted_only_with_its_id(monkeypatch) -> None:
    monkeypatch.setenv("NOTIFY_TOKEN_PREVIOUS_SECRET", "old")
    with pytest.raises(ValidationError, match="together"):
        WebSocketSettings()
    monkeypatch.setenv("NOTIFY_TOKEN_PREVIOUS_KEY_ID", "k0")
    assert WebSocketSettings().notify_token_keys == {"k1": DEV_NOTIFY_TOKEN_SECRET.encode(), "k0": b"old"}
