"""The function app's settings, read once from the environment (Functions app settings are environment
variables). Every key is listed, with a note, in ``local.settings.sample.json``."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service_platform.notify_tokens import DEFAULT_KEY_ID, DEV_NOTIFY_TOKEN_SECRET, KEY_ID_PATTERN

#: The development default of CORRELATION_ID_SECRET; never for deployment (Key Vault has the real one).
DEV_CORRELATION_ID_SECRET = "local-development-only-correlation-secret"


class OrderSettings(BaseSettings):
    """Frozen settings for intake, processing and the status API."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    servicebus_connection: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ServiceBusConnection", "SERVICEBUS_CONNECTION"))
    servicebus_namespace: str | None = Field(
        default=None, validation_alias=AliasChoices("ServiceBusConnection__fullyQualifiedNamespace"))
    orders_queue: str = Field(default="orders", validation_alias="ORDERS_QUEUE")
    order_status_queue: str = Field(default="order-status", validation_alias="ORDER_STATUS_QUEUE")
    sql_url: str = Field(default="sqlite:///.local/orders.db", validation_alias="SQL_URL")
    sql_entra_auth: bool = Field(default=False, validation_alias="SQL_ENTRA_AUTH")
    redis_url: str = Field(default="redis://127.0.0.1:6380/0", validation_alias="REDIS_URL")
    redis_entra_auth: bool = Field(default=False, validation_alias="REDIS_ENTRA_AUTH")
    azure_client_id: str | None = Field(default=None, validation_alias="AZURE_CLIENT_ID")
    notify_token_secret: SecretStr = Field(default=SecretStr(DEV_NOTIFY_TOKEN_SECRET), validation_alias="NOTIFY_TOKEN_SECRET")
    notify_token_ttl_seconds: int = Field(default=3600, ge=60, validation_alias="NOTIFY_TOKEN_TTL_SECONDS")
    notify_public_url: str = Field(default="ws://127.0.0.1:8080/ws", validation_alias="NOTIFY_PUBLIC_URL")
    correlation_ttl_seconds: int = Field(default=90_000, ge=86_400, validation_alias="CORRELATION_TTL_SECONDS")
    notify_token_key_id: str = Field(default=DEFAULT_KEY_ID, pattern=KEY_ID_PATTERN, validation_alias="NOTIFY_TOKEN_KEY_ID")
    # Keys the correlationIds of Idempotency-Key requests; changing it changes those ids (see the sample).
    correlation_id_secret: SecretStr = Field(default=SecretStr(DEV_CORRELATION_ID_SECRET),
                                             validation_alias="CORRELATION_ID_SECRET")
    # Sign-in (docs/sign-in.md): the issuer and audience of accepted access tokens.
    auth_issuer: str = Field(default="", validation_alias="AUTH_ISSUER")
    auth_audience: str = Field(default="", validation_alias="AUTH_AUDIENCE")
    auth_jwks_url: str | None = Field(default=None, validation_alias="AUTH_JWKS_URL")
    auth_customer_claim: str = Field(default="oid", min_length=1, validation_alias="AUTH_CUSTOMER_CLAIM")
    auth_clock_leeway_seconds: float = Field(default=60.0, ge=0, le=300, validation_alias="AUTH_CLOCK_LEEWAY_SECONDS")
    auth_key_refresh_seconds: float = Field(default=30.0, ge=0, validation_alias="AUTH_KEY_REFRESH_SECONDS")
    # Abuse limits (docs/orders.md, "Limits").
    max_lines_per_order: int = Field(default=50, ge=1, le=100, validation_alias="ORDER_MAX_LINES")
    max_units_per_order: int = Field(default=500, ge=1, validation_alias="ORDER_MAX_UNITS")
    max_orders_in_flight: int = Field(default=20, ge=1, validation_alias="CUSTOMER_MAX_ORDERS_IN_FLIGHT")
    max_orders_per_minute: int = Field(default=60, ge=1, validation_alias="CUSTOMER_MAX_ORDERS_PER_MINUTE")
    in_flight_window_seconds: int = Field(default=900, ge=60, validation_alias="CUSTOMER_IN_FLIGHT_WINDOW_SECONDS")

    @field_validator("servicebus_connection", "servicebus_namespace", "azure_client_id", "auth_jwks_url",
                     mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        # App settings cannot be removed per environment, only emptied (the sample lists every key).
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _one_way_to_reach_service_bus(self) -> OrderSettings:
        if self.servicebus_connection is None and not self.servicebus_namespace:
            raise ValueError(
                "Service Bus is not configured: set ServiceBusConnection (a connection string, e.g. the local "
                "broker's) or ServiceBusConnection__fullyQualifiedNamespace (<namespace>.servicebus.windows.net, "
                "reached with the workload identity)")
        if not self.auth_issuer.strip() or not self.auth_audience.strip():
            raise ValueError(
                "sign-in is not configured: set AUTH_ISSUER (https://login.microsoftonline.com/<tenant-id>/v2.0, or "
                "the local identity provider's URL) and AUTH_AUDIENCE (the API's Application ID URI, e.g. "
                "api://orders); every /api route except health and the OpenAPI document needs a token")
        return self
