"""Offers: read one, accept or reject it with its fencing token. A driver sees and answers only
the offers made to them (another's is a 404); ADMIN acts for any driver."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from rideflow.api.deps import OffersDep
from rideflow.api.ownership import acting_as, driver_for
from rideflow.api.problems import responses
from rideflow.api.security import DriverCaller
from rideflow.auth.principal import Principal, Role
from rideflow.dispatch.offers import Offers
from rideflow.dispatch.schemas import OfferAnswer, OfferAnswered, OfferView
from rideflow.errors import NotFound
from rideflow.schemas import ID_PATTERN

router = APIRouter(prefix="/v1/offers", tags=["offers"])
OfferId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]


@router.get(
    "/{offer_id}",
    response_model=OfferView,
    responses=responses(404),
    summary="An offer and what became of it",
)
async def get_offer(offer_id: OfferId, caller: DriverCaller, offers: OffersDep) -> OfferView:
    offer = await offers.get(offer_id)
    if acting_as(caller, Role.DRIVER) and offer.driver_id != caller.subject:
        raise NotFound(f"no offer with id {offer_id!r}")
    return offer


async def _answer(
    offers: Offers, offer_id: str, verb: str, body: OfferAnswer, caller: Principal
) -> OfferAnswered:
    driver = driver_for(caller, body.driver_id)
    mine_only = acting_as(caller, Role.DRIVER)
    return await offers.answer(offer_id, verb, driver, body.token, mine_only=mine_only)


@router.post(
    "/{offer_id}/accept",
    response_model=OfferAnswered,
    responses=responses(404, 409, 422),
    summary="The driver takes the order: it becomes ACCEPTED",
    description="409 when the token is not the offer's, the offer was already answered or "
    "withdrawn, or its deadline has passed. Another driver's offer is 404 to a driver (ADMIN, "
    "naming the driver, gets a 409).",
)
async def accept_offer(
    offer_id: OfferId, body: OfferAnswer, caller: DriverCaller, offers: OffersDep
) -> OfferAnswered:
    return await _answer(offers, offer_id, "accept", body, caller)


@router.post(
    "/{offer_id}/reject",
    response_model=OfferAnswered,
    responses=responses(404, 409, 422),
    summary="The driver declines: freed at once, and the next driver is offered the order",
)
async def reject_offer(
    offer_id: OfferId, body: OfferAnswer, caller: DriverCaller, offers: OffersDep
) -> OfferAnswered:
    return await _answer(offers, offer_id, "reject", body, caller)
