"""Offers: read one, accept or reject it with its fencing token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from rideflow.api.deps import OffersDep
from rideflow.api.problems import responses
from rideflow.dispatch.schemas import OfferAnswer, OfferAnswered, OfferView
from rideflow.schemas import ID_PATTERN

router = APIRouter(prefix="/v1/offers", tags=["offers"])
OfferId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]


@router.get(
    "/{offer_id}",
    response_model=OfferView,
    responses=responses(404),
    summary="An offer and what became of it",
)
async def get_offer(offer_id: OfferId, offers: OffersDep) -> OfferView:
    return await offers.get(offer_id)


@router.post(
    "/{offer_id}/accept",
    response_model=OfferAnswered,
    responses=responses(404, 409, 422),
    summary="The driver takes the order: it becomes ACCEPTED",
    description="409 when the offer was made to another driver, the token is not the offer's, "
    "the offer was already answered or withdrawn, or its deadline has passed.",
)
async def accept_offer(offer_id: OfferId, body: OfferAnswer, offers: OffersDep) -> OfferAnswered:
    return await offers.answer(offer_id, "accept", body.driver_id, body.token)


@router.post(
    "/{offer_id}/reject",
    response_model=OfferAnswered,
    responses=responses(404, 409, 422),
    summary="The driver declines: freed at once, and the next driver is offered the order",
)
async def reject_offer(offer_id: OfferId, body: OfferAnswer, offers: OffersDep) -> OfferAnswered:
    return await offers.answer(offer_id, "reject", body.driver_id, body.token)
