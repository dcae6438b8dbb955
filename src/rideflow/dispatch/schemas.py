"""Request and response bodies of offers and of the synchronous delivery assignment."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rideflow.config import Strategy
from rideflow.orders.states import OrderStatus
from rideflow.schemas import STRATEGY_DOC, Body, Id, Point

OfferStatus = Literal["PENDING", "ACCEPTED", "REJECTED", "EXPIRED", "WITHDRAWN"]


class AssignRequest(Body):
    """The body of `POST /v1/delivery/assign` as the delivery-assignment contract has it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "ORD_2847",
                    "restaurant_id": "RST_441",
                    "location": {"lat": 12.9716, "lng": 77.5946},
                    "strategy": "nearest",
                    "radius_km": 5,
                    "timeout_sec": 30,
                }
            ]
        },
    )

    order_id: Id
    restaurant_id: Id
    location: Point = Field(description="Where the driver picks the order up (the restaurant)")
    strategy: Strategy | None = Field(default=None, description=STRATEGY_DOC)
    radius_km: float = Field(default=5, gt=0, le=50, description="Widest search radius")
    timeout_sec: int = Field(
        default=30, ge=5, le=600, description="How long the driver has to answer the offer"
    )


class AssignedDriver(BaseModel):
    id: str
    name: str
    rating: float
    distance_km: float
    eta_min: int


class PartnerInfo(BaseModel):
    vehicle: str


class AssignResponse(BaseModel):
    delivery_id: str
    status: OrderStatus = Field(description="OFFERED until the driver accepts")
    driver: AssignedDriver
    partner_info: PartnerInfo
    offer_expires_at: datetime = Field(description="When the offer lapses unanswered")
    latency_ms: float = Field(description="Time this request spent in RideFlow")


class OfferView(BaseModel):
    offer_id: str
    order_id: str
    kind: Literal["ride", "delivery"]
    driver_id: str
    token: int = Field(description="Fencing token: present it to accept or reject")
    status: OfferStatus
    pickup: Point
    dropoff: Point | None = None
    pickup_distance_m: float
    created_at: datetime
    expires_at: datetime


class DriverOffers(BaseModel):
    driver_id: str
    offers: list[OfferView] = Field(description="The pending offer, if any (at most one)")


class OfferAnswer(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"token": 1042}]})

    driver_id: Id | None = Field(
        default=None, description="A driver's own id, or left out; ADMIN names the driver"
    )
    token: int = Field(ge=1, description="The offer's fencing token")


class OfferAnswered(BaseModel):
    offer_id: str
    order_id: str
    status: OfferStatus
    order_status: OrderStatus
    at: datetime
