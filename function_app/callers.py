"""Who is calling: the bearer token of a request, validated, as the core's ``Caller``.

Scope and app-role names are the app registration's (``service_platform.app_registration``); the core
knows only permissions.
"""

from __future__ import annotations

import azure.functions as func

from orders.bootstrap import OrderService
from orders.domain.callers import Caller, Permission
from service_platform.access_tokens import TokenIdentity
from service_platform.app_registration import ADMIN_ROLE, CUSTOMER_SCOPE, READ_ALL_ROLE, SUBMIT_ON_BEHALF_ROLE


def caller_for(identity: TokenIdentity) -> Caller:
    permissions: set[Permission] = set()
    if not identity.app_only and CUSTOMER_SCOPE in identity.scopes:
        permissions.add(Permission.OWN_ORDERS)
    if identity.app_only and SUBMIT_ON_BEHALF_ROLE in identity.roles:
        permissions.add(Permission.SUBMIT_ON_BEHALF)
    if identity.roles & {ADMIN_ROLE, READ_ALL_ROLE}:
        permissions.add(Permission.READ_ANY_ORDER)
    if ADMIN_ROLE in identity.roles:
        permissions.add(Permission.OPERATE)
    return Caller(customer_id=None if identity.app_only else identity.subject, permissions=frozenset(permissions),
                  name=_name(identity))


def _name(identity: TokenIdentity) -> str:
    """How the audit names the caller: a person's sign-in name, else the application's or the subject's id."""
    for claim in ("preferred_username", "upn", "name", "azp", "appid"):
        value = identity.claims.get(claim)
        if isinstance(value, str) and value:
            return f"{value} ({identity.subject})" if claim in ("preferred_username", "upn", "name") else value
    return identity.subject


async def authenticate(req: func.HttpRequest, svc: OrderService) -> Caller:
    """The request's caller; ``TokenRejected`` (401) or ``Forbidden`` (403, a valid token granting nothing here)."""
    return caller_for(await svc.access_tokens.validate_header(req.headers.get("authorization")))
