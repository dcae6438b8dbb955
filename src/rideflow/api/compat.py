"""The original ride queue service's endpoint, kept working exactly as it was used."""

from __future__ import annotations

from fastapi import APIRouter, Request

from rideflow.api.problems import responses
from rideflow.deps import IDEMPOTENCY_DOC, OrdersDep, idempotency_key
from rideflow.schemas import Point, RideCreate, SeedRideQueued, SeedRideRequest

router = APIRouter(tags=["compatibility"])


@router.post(
    "/request-ride",
    status_code=202,
    response_model=SeedRideQueued,
    responses=responses(409, 422),
    summary="Request a ride with the original flat body (same as POST /v1/rides)",
    openapi_extra=IDEMPOTENCY_DOC,
)
async def request_ride(
    body: SeedRideRequest, orders: OrdersDep, request: Request
) -> SeedRideQueued:
    ride = RideCreate(
        rider_id=str(body.rider_id),
        pickup=Point(lat=body.pickup_lat, lng=body.pickup_lng),
        dropoff=Point(lat=body.dest_lat, lng=body.dest_lng),
    )
    ride_id, _city = await orders.create_ride(ride, idempotency_key(request))
    return SeedRideQueued(ride_id=ride_id)
