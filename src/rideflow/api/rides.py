"""Rides: accept onto the city queue, read, follow, and move along the state machine."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from rideflow.api.deps import (
    IDEMPOTENCY_DOC,
    OrdersDep,
    PinsDep,
    RecordDep,
    idempotency_key,
    orders_of,
)
from rideflow.api.history import order_or_record
from rideflow.api.ownership import check_order, customer_for, with_pin
from rideflow.api.params import EventAfter
from rideflow.api.problems import responses
from rideflow.api.security import (
    CUSTOMER_CHECK,
    SECURED,
    AnyCaller,
    checks_inside,
)
from rideflow.api.steps import OrderId, add_steps
from rideflow.orders.schemas import RideAccepted, RideCreate, RideEvents, RideView
from rideflow.orders.store import Orders

router = APIRouter(prefix="/v1/rides", tags=["rides"])
# Documented by hand because create_ride parses its body itself; `Point` is in the components
# through the response models.
_schema = RideCreate.model_json_schema(ref_template="#/components/schemas/{model}")
RIDE_CREATE_SCHEMA = {
    k: v for k, v in _schema.get("$defs", {}).get("RideCreate", _schema).items() if k != "$defs"
}


@router.post(
    "",
    status_code=202,
    response_model=RideAccepted,
    responses=responses(409, 422),
    summary="Request a ride: queued for dispatch, answered at once",
    description="A CUSTOMER requests for themself (`rider_id` left out, or their own id); "
    "ADMIN and back ends with an API key name the rider.",
    openapi_extra={
        **IDEMPOTENCY_DOC,
        **SECURED,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RIDE_CREATE_SCHEMA}},
        },
    },
)
@checks_inside(CUSTOMER_CHECK)
async def create_ride(request: Request) -> Response:
    # The hottest route, kept lean: pydantic parses the raw JSON in one pass (a ValidationError
    # renders as 422 like any other), with no dependency or response-model pass; the caller is
    # checked here, as `CustomerCaller` would (CUSTOMER or ADMIN, or a back end).
    caller = await CUSTOMER_CHECK(request)
    body = RideCreate.model_validate_json(await request.body())
    rider = customer_for(caller, body.rider_id, "rider_id")
    if body.rider_id != rider:
        body = body.model_copy(update={"rider_id": rider})
    ride_id, city = await orders_of(request).create_ride(body, idempotency_key(request))
    return Response(
        orjson.dumps({"ride_id": ride_id, "status": "QUEUED", "city": city}),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/v1/rides/{ride_id}"},
    )


@router.get(
    "/{ride_id}",
    response_model=RideView,
    responses=responses(404),
    summary="A ride: status, driver, pickup distance, time of each transition",
    description="From Redis while it holds the ride; after that, from the record (SQL). A "
    "customer reads their own rides, a driver the one they are offered or drive; any other is "
    "404.",
)
async def get_ride(
    ride_id: OrderId, caller: AnyCaller, orders: OrdersDep, record: RecordDep, pins: PinsDep
) -> RideView:
    ride = await order_or_record(orders, record, ride_id, "ride")
    check_order(caller, ride, "ride", ride_id)
    await with_pin(caller, ride, ride_id, pins)
    return ride  # type: ignore[return-value]


@router.get(
    "/{ride_id}/events",
    response_model=RideEvents,
    responses=responses(404, 422),
    summary="A ride's transitions in order; `after` resumes from a known event id",
)
async def get_events(
    ride_id: OrderId,
    caller: AnyCaller,
    orders: OrdersDep,
    record: RecordDep,
    after: EventAfter = None,
) -> RideEvents:
    check_order(caller, await order_or_record(orders, record, ride_id, "ride"), "ride", ride_id)
    return RideEvents(ride_id=ride_id, events=await orders.events(ride_id, "ride", after))


add_steps(router, "ride", Orders.ride, RideView)
