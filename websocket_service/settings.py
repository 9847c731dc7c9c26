"""Settings of the WebSocket service, read from the environment once, in ``bootstrap``."""

from __future__ import annotations

import socket
import uuid

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service_platform.notify_tokens import DEFAULT_KEY_ID, DEV_NOTIFY_TOKEN_SECRET, KEY_ID_PATTERN

__all__ = ["DEV_INTERNAL_SECRET", "DEV_NOTIFY_TOKEN_SECRET", "WebSocketSettings"]

DEV_INTERNAL_SECRET = "dev-only-internal-secret"


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class WebSocketSettings(BaseSettings):
    """Every key is documented in docs/websocket-service.md."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True, populate_by_name=True)

    host: str = Field("127.0.0.1", alias="WS_HOST")
    port: int = Field(8080, alias="WS_PORT", ge=0, le=65535)
    instance_id: str = Field(default_factory=_default_instance_id, alias="WS_INSTANCE_ID", min_length=1)
    internal_url: str | None = Field(None, alias="WS_INTERNAL_URL")
    internal_secret: SecretStr = Field(SecretStr(DEV_INTERNAL_SECRET), alias="WS_INTERNAL_SECRET")
    redis_url: str = Field("redis://127.0.0.1:6380/0", alias="REDIS_URL")
    redis_entra_auth: bool = Field(False, alias="REDIS_ENTRA_AUTH")
    servicebus_connection: SecretStr | None = Field(None, alias="ServiceBusConnection")
    servicebus_namespace: str | None = Field(None, alias="ServiceBusConnection__fullyQualifiedNamespace")
    order_status_queue: str = Field("order-status", alias="ORDER_STATUS_QUEUE", min_length=1)
    status_api_url: str = Field("http://127.0.0.1:7071/api", alias="STATUS_API_URL")
    # How this service signs in to the status API: a workload-identity scope in Azure, or client credentials
    # at a token endpoint (the local identity provider). Neither set: requests go without a token.
    status_api_scope: str | None = Field(None, alias="STATUS_API_SCOPE")
    status_api_token_url: str | None = Field(None, alias="STATUS_API_TOKEN_URL")
    status_api_client_id: str | None = Field(None, alias="STATUS_API_CLIENT_ID")
    status_api_client_secret: SecretStr | None = Field(None, alias="STATUS_API_CLIENT_SECRET")
    azure_client_id: str | None = Field(None, alias="AZURE_CLIENT_ID")
    notify_token_secret: SecretStr = Field(SecretStr(DEV_NOTIFY_TOKEN_SECRET), alias="NOTIFY_TOKEN_SECRET")
    notify_token_key_id: str = Field(DEFAULT_KEY_ID, alias="NOTIFY_TOKEN_KEY_ID", pattern=KEY_ID_PATTERN)
    notify_token_previous_secret: SecretStr | None = Field(None, alias="NOTIFY_TOKEN_PREVIOUS_SECRET")
    notify_token_previous_key_id: str | None = Field(None, alias="NOTIFY_TOKEN_PREVIOUS_KEY_ID")
    heartbeat_seconds: float = Field(20.0, alias="WS_HEARTBEAT_SECONDS", gt=0)
    per_message_deflate: bool = Field(False, alias="WS_PER_MESSAGE_DEFLATE")
    send_queue_limit: int = Field(256, alias="WS_SEND_QUEUE_LIMIT", ge=1)
    max_subscriptions: int = Field(100, alias="WS_MAX_SUBSCRIPTIONS_PER_SOCKET", ge=1)
    max_connections: int = Field(10_000, alias="WS_MAX_CONNECTIONS", ge=1)
    max_connections_per_client: int = Field(100, alias="WS_MAX_CONNECTIONS_PER_CLIENT", ge=1)
    idle_seconds: float = Field(30.0, alias="WS_IDLE_SECONDS", gt=0)
    max_frames_per_10s: int = Field(120, alias="WS_MAX_FRAMES_PER_10S", ge=1)
    client_address_header: str | None = Field(None, alias="WS_CLIENT_ADDRESS_HEADER")
    registry_ttl_seconds: float = Field(60.0, alias="WS_REGISTRY_TTL_SECONDS", ge=1)
    registry_prefix: str = Field("ws:corr:", alias="WS_REGISTRY_PREFIX")
    forward_timeout_seconds: float = Field(1.0, alias="WS_FORWARD_TIMEOUT_SECONDS", gt=0)
    status_api_timeout_seconds: float = Field(3.0, alias="WS_STATUS_API_TIMEOUT_SECONDS", gt=0)
    proxy_api: bool = Field(True, alias="WS_PROXY_API")
    # The page's sign-in (authorization code with PKCE); no authority: the page calls the API without a token.
    sign_in_authority: str | None = Field(None, alias="WS_SIGN_IN_AUTHORITY")
    sign_in_client_id: str = Field("orders-page", alias="WS_SIGN_IN_CLIENT_ID", min_length=1)
    sign_in_scope: str = Field("api://orders/Orders.ReadWrite", alias="WS_SIGN_IN_SCOPE", min_length=1)
    log_level: str = Field("INFO", alias="WS_LOG_LEVEL")

    @model_validator(mode="after")
    def _check(self) -> WebSocketSettings:
        if not self.internal_secret.get_secret_value():
            raise ValueError("WS_INTERNAL_SECRET is empty: set it to the secret shared by all instances")
        if not self.notify_token_secret.get_secret_value():
            raise ValueError("NOTIFY_TOKEN_SECRET is empty: set it to the secret the intake signs tokens with")
        previous = self.notify_token_previous_secret
        if bool(previous and previous.get_secret_value()) != bool(self.notify_token_previous_key_id):
            raise ValueError("set NOTIFY_TOKEN_PREVIOUS_SECRET and NOTIFY_TOKEN_PREVIOUS_KEY_ID together (the key "
                             "being retired during a rotation), or neither")
        return self

    @property
    def notify_token_keys(self) -> dict[str, bytes]:
        """The notify token keys accepted: the current one and, during a rotation, the previous one."""
        keys = {self.notify_token_key_id: self.notify_token_secret.get_secret_value().encode()}
        if self.notify_token_previous_key_id and self.notify_token_previous_secret is not None:
            keys[self.notify_token_previous_key_id] = self.notify_token_previous_secret.get_secret_value().encode()
        return keys

    @property
    def advertised_internal_url(self) -> str:
        """How peers reach this instance: WS_INTERNAL_URL, else derived from host and port."""
        if self.internal_url:
            return self.internal_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def servicebus_configured(self) -> bool:
        return bool(self.servicebus_connection and self.servicebus_connection.get_secret_value()) or bool(
            self.servicebus_namespace)
