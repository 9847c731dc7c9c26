"""The development principals: who can sign in locally and what their tokens say.

Object ids are stable UUIDs derived from the names, so a customer's orders survive a restart of the stack.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from service_platform.app_registration import ADMIN_ROLE, CUSTOMER_SCOPE, READ_ALL_ROLE, SUBMIT_ON_BEHALF_ROLE

_NAMESPACE = uuid.UUID("6a1f0c52-3d7e-4b8a-9f21-5c0e7d4b2a19")

#: The audience of the order API's tokens (in Entra ID: the app registration's Application ID URI).
DEV_AUDIENCE = "api://orders"
#: The development tenant (Entra puts the tenant id in ``tid``).
DEV_TENANT_ID = str(uuid.uuid5(_NAMESPACE, "tenant"))
#: The development backend's client credentials (never used outside the local stack).
DEV_BACKEND_CLIENT_ID = "orders-backend"
DEV_BACKEND_CLIENT_SECRET = "local-development-only-backend-secret"
#: The WebSocket service's client credentials: it reads any order's status to answer a subscribe.
DEV_WEBSOCKET_CLIENT_ID = "orders-websocket"
DEV_WEBSOCKET_CLIENT_SECRET = "local-development-only-websocket-secret"
#: The client id the order page signs in with.
DEV_PAGE_CLIENT_ID = "orders-page"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    display_name: str
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    app_only: bool = False

    @property
    def object_id(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, self.name))

    @property
    def kind(self) -> str:
        if self.app_only:
            return "backend"
        return "operator" if ADMIN_ROLE in self.roles else "customer"


USERS: dict[str, Principal] = {
    p.name: p for p in (
        Principal("alice", "Alice (customer)", (CUSTOMER_SCOPE,), ()),
        Principal("bob", "Bob (customer)", (CUSTOMER_SCOPE,), ()),
        Principal("carol", "Carol (customer)", (CUSTOMER_SCOPE,), ()),
        Principal("olivia", "Olivia (operator)", (CUSTOMER_SCOPE,), (ADMIN_ROLE,)),
    )
}

BACKEND = Principal(DEV_BACKEND_CLIENT_ID, "Order backend (app-only)", (), (SUBMIT_ON_BEHALF_ROLE,), app_only=True)
WEBSOCKET_SERVICE = Principal(DEV_WEBSOCKET_CLIENT_ID, "WebSocket service (app-only)", (), (READ_ALL_ROLE,),
                              app_only=True)

#: Applications with client credentials: client id → (secret, principal).
CLIENTS: dict[str, tuple[str, Principal]] = {
    DEV_BACKEND_CLIENT_ID: (DEV_BACKEND_CLIENT_SECRET, BACKEND),
    DEV_WEBSOCKET_CLIENT_ID: (DEV_WEBSOCKET_CLIENT_SECRET, WEBSOCKET_SERVICE),
}


def customer_object_id(name: str) -> str:
    """The ``oid`` of a development user, e.g. for a backend that submits on alice's behalf."""
    return USERS[name].object_id
