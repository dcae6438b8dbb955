"""Drivers: registration, online status, positions. A driver acts only as themself: a path
naming another driver is 403 to them; ADMIN acts for any driver (ops tooling)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from rideflow.api.deps import DriversDep, OffersDep
from rideflow.api.ownership import driver_for
from rideflow.api.problems import responses
from rideflow.api.security import AdminCaller, DriverCaller, FleetCaller
from rideflow.dispatch.schemas import DriverOffers
from rideflow.drivers.schemas import (
    DriverCreate,
    DriverLocation,
    DriverStatusUpdate,
    DriverView,
    Location,
    LocationBatch,
    LocationBatchResult,
)
from rideflow.schemas import ID_PATTERN

router = APIRouter(prefix="/v1/drivers", tags=["drivers"])
DriverId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]


@router.post(
    "",
    status_code=201,
    response_model=DriverView,
    responses=responses(409, 422),
    summary="Register a driver (offline until they go online)",
    description="ADMIN only: drivers register themselves through `POST /v1/auth/register`.",
)
async def create_driver(body: DriverCreate, caller: AdminCaller, drivers: DriversDep) -> DriverView:
    return await drivers.create(body)


@router.get(
    "/{driver_id}",
    response_model=DriverView,
    responses=responses(404),
    summary="A driver: profile, status, current order and offer, last position",
    description="The driver themself or ADMIN.",
)
async def get_driver(driver_id: DriverId, caller: DriverCaller, drivers: DriversDep) -> DriverView:
    return await drivers.get(driver_for(caller, driver_id))


@router.get(
    "/{driver_id}/offers",
    response_model=DriverOffers,
    responses=responses(404),
    summary="The driver's pending offer (at most one), with its fencing token and deadline",
)
async def get_offers(
    driver_id: DriverId, caller: DriverCaller, drivers: DriversDep, offers: OffersDep
) -> DriverOffers:
    driver_id = driver_for(caller, driver_id)
    city = await drivers.city_of(driver_id)
    return DriverOffers(driver_id=driver_id, offers=await offers.pending_for(city, driver_id))


@router.put(
    "/{driver_id}/status",
    response_model=DriverView,
    responses=responses(404, 422),
    summary="Go online or offline; going offline declines a pending offer",
)
async def set_status(
    driver_id: DriverId,
    body: DriverStatusUpdate,
    caller: DriverCaller,
    drivers: DriversDep,
    offers: OffersDep,
) -> DriverView:
    driver_id = driver_for(caller, driver_id)
    view = await drivers.set_status(driver_id, body.status)
    if body.status == "offline" and view.offer_id:
        # Offline first (no new offer can be made), then the pending one moves on at once.
        reason = f"driver {driver_id} went offline"
        await offers.decline(view.city, driver_id, view.offer_id, reason)
        view = await drivers.get(driver_id)
    return view


@router.put(
    "/{driver_id}/location",
    status_code=204,
    responses=responses(404, 422),
    summary="Report one position",
)
async def put_location(
    driver_id: DriverId, body: Location, caller: DriverCaller, drivers: DriversDep
) -> None:
    driver_id = driver_for(caller, driver_id)
    await drivers.record_one(DriverLocation(driver_id=driver_id, **body.model_dump()))


@router.post(
    "/locations",
    response_model=LocationBatchResult,
    responses=responses(422),
    summary="Report many positions in one call; refused ones are listed with a reason",
    description="Many drivers' positions from a fleet gateway: ADMIN, or a back end's API key "
    "with role DRIVER; a driver's own account reports with `PUT /v1/drivers/{id}/location`.",
)
async def post_locations(
    body: LocationBatch, caller: FleetCaller, drivers: DriversDep
) -> LocationBatchResult:
    return await drivers.record(body.positions)
