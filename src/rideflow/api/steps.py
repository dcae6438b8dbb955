"""The state machine's steps as routes, the same for rides and deliveries.

No `from __future__ import annotations` here: the routes are built in a loop and FastAPI must see
their annotations as objects, not as names to look up in this module."""

from collections.abc import Awaitable, Callable
from typing import Annotated, cast

from fastapi import APIRouter, Path
from pydantic import BaseModel

from rideflow.api.deps import OrdersDep, PinsDep
from rideflow.api.ownership import check_order, driver_for
from rideflow.api.problems import responses
from rideflow.api.security import CustomerCaller, DriverCaller
from rideflow.auth.principal import Principal
from rideflow.orders.pins import needs_pin
from rideflow.orders.schemas import DeliveryView, DriverStep, RideView
from rideflow.orders.states import KIND_STEPS, STEPS, Kind
from rideflow.orders.store import Orders
from rideflow.schemas import ID_PATTERN

OrderId = Annotated[str, Path(min_length=1, max_length=96, pattern=ID_PATTERN)]


def add_steps(
    router: APIRouter,
    kind: Kind,
    view: Callable[[Orders, str], Awaitable[BaseModel]],
    model: type[BaseModel],
) -> None:
    """`POST /{id}/<step>` for each step of `kind`; each answers with the order after the step."""
    for action in KIND_STEPS[kind]:
        step = STEPS[action]
        who = "The driver" if step.by_driver else "The customer"
        summary = f"{who}: {' or '.join(step.sources)} -> {step.target}"
        if step.final and step.by_driver:
            summary += "; the driver returns to the pool"
        if not step.by_driver:
            summary = f"Cancel a live {kind}; a driver offered or holding it is freed at once"
        router.add_api_route(
            f"/{{{kind}_id}}/{action}",
            _route(kind, action, view, step.by_driver),
            methods=["POST"],
            response_model=model,
            responses=responses(404, 409, 422),
            summary=summary,
            name=f"{kind}_{action.replace('-', '_')}",
        )


def _route(
    kind: Kind,
    action: str,
    view: Callable[[Orders, str], Awaitable[BaseModel]],
    by_driver: bool,
) -> Callable[..., Awaitable[BaseModel]]:
    order_id_param = Annotated[
        str, Path(alias=f"{kind}_id", min_length=1, max_length=96, pattern=ID_PATTERN)
    ]

    async def check_mine(
        caller: Principal, orders: Orders, order_id: str
    ) -> RideView | DeliveryView:
        # Read before the step (a live order is in Redis; a gone one is a 404 either way):
        # another's is a 404, worded as for an unknown id. The step's script re-checks the
        # driver, so a change in between is refused, not let through.
        order = cast(RideView | DeliveryView, await view(orders, order_id))
        check_order(caller, order, kind, order_id)
        return order

    if by_driver:

        async def driver_step(
            order_id: order_id_param,
            caller: DriverCaller,
            orders: OrdersDep,
            pins: PinsDep,
            body: DriverStep | None = None,
        ) -> BaseModel:
            driver = driver_for(caller, body.driver_id if body is not None else None)
            order = await check_mine(caller, orders, order_id)
            if needs_pin(kind, action) and not caller.admin:
                # The driver's own account shows the customer's code; ADMIN (support) need not.
                await pins.check_step(order.city, order_id, body.pin if body else None)
            await orders.step(order_id, kind, action, driver)
            return await view(orders, order_id)

        return driver_step

    async def customer_step(
        order_id: order_id_param,
        caller: CustomerCaller,
        orders: OrdersDep,
    ) -> BaseModel:
        await check_mine(caller, orders, order_id)
        await orders.step(order_id, kind, action)
        return await view(orders, order_id)

    return customer_step
