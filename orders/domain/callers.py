"""Who is calling and what they may do: the authorisation rules of the order API.

A caller is built from a validated access token by the HTTP edge; the rules here know nothing of tokens,
scopes or app roles, only of permissions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from orders.domain.errors import Forbidden, OrderNotFound


class Permission(enum.Enum):
    OWN_ORDERS = "own-orders"  # place and read the caller's own orders (a customer's delegated token)
    SUBMIT_ON_BEHALF = "submit-on-behalf"  # place orders naming any customer (a trusted backend)
    READ_ANY_ORDER = "read-any-order"  # read every order (operators)
    OPERATE = "operate"  # inspect, replay, repair and discard dead letters (operators)


@dataclass(frozen=True, slots=True)
class Caller:
    """``customer_id`` is the customer the caller is (from the token), None for an app-only caller."""

    customer_id: str | None
    permissions: frozenset[Permission]
    name: str = ""  # who it is, for the audit of operators' actions


def customer_for_submission(caller: Caller, named_in_body: str | None) -> str:
    """The customer an order is placed for: the signed-in customer, or the one a trusted backend names.

    A customer naming somebody else is ``Forbidden``; a backend must name the customer.
    """
    if caller.customer_id is not None and Permission.OWN_ORDERS in caller.permissions:
        if named_in_body is not None and named_in_body != caller.customer_id:
            raise Forbidden("customerId in the body differs from the signed-in customer: leave it out, or sign "
                            "in as that customer")
        return caller.customer_id
    if Permission.SUBMIT_ON_BEHALF in caller.permissions:
        if named_in_body is None:
            raise Forbidden("an app-only caller must name the customer: add customerId to the body")
        return named_in_body
    raise Forbidden("this token may not place orders: it needs the scope Orders.ReadWrite (a customer) or the "
                    "app role Orders.SubmitOnBehalf (a backend)")


def ensure_may_read_orders(caller: Caller) -> None:
    if not caller.permissions & {Permission.OWN_ORDERS, Permission.READ_ANY_ORDER}:
        raise Forbidden("this token may not read orders: it needs the scope Orders.ReadWrite or the app role "
                        "Orders.Admin")


def ensure_owner_or_operator(caller: Caller, correlation_id: str, owner: str | None) -> None:
    """Another customer's order reads as absent (``OrderNotFound``): no hint that the id exists."""
    if Permission.READ_ANY_ORDER in caller.permissions:
        return
    if owner is None or owner != caller.customer_id:
        raise OrderNotFound(correlation_id)


def ensure_may_browse(caller: Caller) -> None:
    """The catalog is for any caller the API grants something to."""
    if not caller.permissions:
        raise Forbidden("this token grants nothing on the order API: it needs the scope Orders.ReadWrite or one "
                        "of its app roles")


def ensure_may_operate(caller: Caller) -> None:
    if Permission.OPERATE not in caller.permissions:
        raise Forbidden("dead letters are for operators: the token needs the app role Orders.Admin")
