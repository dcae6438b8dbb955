"""Whose it is: the rules that tie a caller to the customers, drivers, orders and jobs a route
touches. Identity comes from the caller, never from the body: an account acts only as itself; an
ADMIN, or a back end with an API key (a service principal), names whom it acts for.

Another customer's order, another driver's offer, another submitter's job answer 404 exactly as
an unknown id does, so ids reveal nothing; a body or path that names another driver or customer
is 403, because the caller told us whom they meant."""

from __future__ import annotations

from rideflow.auth.principal import Principal, Role
from rideflow.errors import Forbidden, NotFound, Unprocessable
from rideflow.orders.pins import TripPins
from rideflow.orders.schemas import DeliveryView, RideView


def sees_all(caller: Principal) -> bool:
    """ADMIN, or a back end: it acts for the customers or drivers it names."""
    return caller.admin or caller.service


def acting_as(caller: Principal, role: Role) -> bool:
    """Whether the caller is an account of `role`, which may act only as itself."""
    return caller.role is role and not caller.service


def customer_for(caller: Principal, named: str | None, field: str) -> str:
    """The customer a creation is for: a CUSTOMER account is that customer (a body naming
    another is 403); ADMIN and back ends must name one (422 naming `field` otherwise)."""
    if acting_as(caller, Role.CUSTOMER):
        if named is not None and named != caller.subject:
            raise Forbidden(f"`{field}` must be your own id ({caller.subject}) or left out")
        return caller.subject
    if named is None:
        raise Unprocessable(
            "required: name the customer this order is for (an account that is the customer "
            "leaves it out)",
            field=field,
        )
    return named


def driver_for(caller: Principal, named: str | None, field: str = "driver_id") -> str:
    """The driver an action is for: a DRIVER account is that driver (a body or path naming
    another is 403); ADMIN and back ends must name one (422 naming `field` otherwise)."""
    if acting_as(caller, Role.DRIVER):
        if named is not None and named != caller.subject:
            raise Forbidden(
                f"`{field}` must be your own id ({caller.subject}); you act only as yourself"
            )
        return caller.subject
    if named is None:
        raise Unprocessable(
            "required: name the driver you act for (a driver's own account leaves it out)",
            field=field,
        )
    return named


def may_read_order(caller: Principal, customer: str, driver: str | None) -> bool:
    """ADMIN and back ends read any order; a customer their own; a driver the one they are
    offered or hold."""
    if sees_all(caller):
        return True
    if caller.role is Role.CUSTOMER:
        return customer == caller.subject
    if caller.role is Role.DRIVER:
        return driver is not None and driver == caller.subject
    return False


def check_order(
    caller: Principal, order: RideView | DeliveryView, kind: str, order_id: str
) -> None:
    """404, worded as for an unknown id, when the caller may not see `order`."""
    customer = order.rider_id if isinstance(order, RideView) else order.customer_id
    driver = order.driver.id if order.driver is not None else None
    if not may_read_order(caller, customer, driver):
        raise NotFound(f"no {kind} with id {order_id!r}")


async def with_pin(
    caller: Principal, order: RideView | DeliveryView, order_id: str, pins: TripPins
) -> None:
    """The trip PIN on the order's view, when the caller is the order's customer (their own
    account: never a driver, a back end or ADMIN) and they still need it."""
    customer = order.rider_id if isinstance(order, RideView) else order.customer_id
    if caller.role is Role.CUSTOMER and not caller.service and caller.subject == customer:
        order.pin = await pins.current(order.city, order_id)
