"""Food orders: priced from the menu, limited stock reserved and the delivery queued at once
(202); recorded in SQL by a background job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from rideflow.api.deps import IDEMPOTENCY_DOC, FoodOrdersDep, idempotency_key
from rideflow.api.ownership import customer_for, may_read_order
from rideflow.api.problems import responses
from rideflow.api.security import CustomerCaller
from rideflow.errors import NotFound
from rideflow.restaurants.schemas import FoodOrderAccepted, FoodOrderCreate, FoodOrderView
from rideflow.schemas import ID_PATTERN

router = APIRouter(prefix="/v1/food-orders", tags=["food orders"])
FoodOrderId = Annotated[str, Path(min_length=1, max_length=96, pattern=ID_PATTERN)]


@router.post(
    "",
    status_code=202,
    response_model=FoodOrderAccepted,
    responses=responses(409, 422),
    summary="Order food: priced from the menu, stock reserved, the delivery queued",
    description="Unknown or unavailable items are 422 naming them; a sold-out item, a "
    "customer past an item's `per_customer_limit` or a closed restaurant is 409. The order id "
    "is also its delivery's (`GET /v1/deliveries/{id}`, `POST …/cancel`). A CUSTOMER orders "
    "for themself; ADMIN and back ends name the customer.",
    openapi_extra=IDEMPOTENCY_DOC,
)
async def create_food_order(
    body: FoodOrderCreate, caller: CustomerCaller, food_orders: FoodOrdersDep, request: Request
) -> FoodOrderAccepted:
    customer = customer_for(caller, body.customer_id, "customer_id")
    if body.customer_id != customer:
        body = body.model_copy(update={"customer_id": customer})
    return await food_orders.create(body, idempotency_key(request))


@router.get(
    "/{order_id}",
    response_model=FoodOrderView,
    responses=responses(404, 422),
    summary="A food order with its delivery's status",
    description="Its customer's, or ADMIN's; another customer's is 404.",
)
async def get_food_order(
    order_id: FoodOrderId, caller: CustomerCaller, food_orders: FoodOrdersDep
) -> FoodOrderView:
    order = await food_orders.get(order_id)
    if not may_read_order(caller, order.customer_id, order.driver_id):
        raise NotFound(f"no food order with id {order_id!r}")
    return order
