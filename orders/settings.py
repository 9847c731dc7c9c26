"""The function app's settings, read once from the environment (Functions app settings are environment
variables). Every key is listed, with a note, in ``local.settings.sample.json``."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service_platform.notify_tokens import DEV_NOTIFY_TOKEN_SECRET



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

    @field_validator("servicebus_connection", "servicebus_namespace", "azure_client_id", mode="before")
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
        return self
