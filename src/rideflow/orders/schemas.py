"""Request and response bodies of rides and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rideflow.config import Strategy
from rideflow.orders.states import OrderStatus
from rideflow.schemas import STRATEGY_DOC, Body, Id, Point


class RideCreate(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rider_id": "rider-1",
                    "pickup": {"lat": 12.9716, "lng": 77.5946},
                    "dropoff": {"lat": 13.01, "lng": 77.60},
                }
            ]
        }
    )

    rider_id: Id | None = Field(
        default=None, description="The rider: a CUSTOMER's own id, or left out; ADMIN names one"
    )
    pickup: Point
    dropoff: Point
    strategy: Strategy | None = Field(default=None, description=STRATEGY_DOC)


class RideAccepted(BaseModel):
    ride_id: str
    status: OrderStatus = "QUEUED"
    city: str


class DriverBrief(BaseModel):
    id: str
    name: str
    rating: float
    vehicle: str


class OrderView(BaseModel):
    """What rides and deliveries share."""

    city: str
    status: OrderStatus
    strategy: Strategy
    pickup: Point
    dropoff: Point | None = Field(default=None, description="Unknown for assigned deliveries")
    driver: DriverBrief | None = Field(
        default=None, description="The driver offered the order or driving it"
    )
    offer_id: str | None = Field(default=None, description="The pending offer, while OFFERED")
    pickup_distance_m: float | None = Field(
        default=None, description="Distance from the driver to the pickup when offered"
    )
    attempts: int = Field(description="Searches that found no driver so far")
    offers: int = Field(description="Offers made so far")
    reason: str | None = None
    created_at: datetime
    transitions: dict[str, datetime] = Field(description="When the order last entered each status")
    pin: str | None = Field(
        default=None,
        description="The trip PIN the customer gives the driver at the pickup (rides) or the"
        " drop-off (deliveries), without which the driver cannot make that step. Shown to the"
        " order's customer only, from ACCEPTED until that step",
    )


class RideView(OrderView):
    ride_id: str
    rider_id: str


class OrderEvent(BaseModel):
    id: str = Field(description="Stream id; pass it as `after` to read only later events")
    status: OrderStatus | Literal["PIN_LOCKED"] = Field(
        description="The status entered, or PIN_LOCKED (not a transition: five wrong trip PINs"
        " locked the driver's step for five minutes)"
    )
    at: datetime
    driver_id: str | None = None
    offer_id: str | None = None
    pickup_distance_m: float | None = None
    reason: str | None = None


class RideEvents(BaseModel):
    ride_id: str
    events: list[OrderEvent]


class DeliveryEvents(BaseModel):
    delivery_id: str
    events: list[OrderEvent]


class DriverStep(Body):
    """A driver moving their order along. A driver's own account may leave `driver_id` out (it
    must be their own id when given); ADMIN names the driver it acts for."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})

    driver_id: Id | None = None
    pin: str | None = Field(
        default=None,
        pattern=r"^[0-9]{4}$",
        description="The trip PIN the customer gave: required for `picked-up` (rides) and"
        " `delivered` (deliveries) from a driver's own account",
    )


class DeliveryCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "cust-7",
                    "order_id": "ORD_2847",
                    "restaurant_id": "RST_441",
                    "pickup": {"lat": 12.9716, "lng": 77.5946},
                    "dropoff": {"lat": 12.99, "lng": 77.61},
                }
            ]
        },
    )

    customer_id: Id | None = Field(
        default=None, description="The customer: a CUSTOMER's own id, or left out; ADMIN names one"
    )
    order_id: Id | None = Field(default=None, description="The merchant's own order reference")
    restaurant_id: Id | None = None
    pickup: Point
    dropoff: Point
    strategy: Strategy | None = Field(default=None, description=STRATEGY_DOC)
    radius_km: float | None = Field(
        default=None, gt=0, le=50, description="Widest search radius; the city's when absent"
    )
    timeout_sec: int | None = Field(
        default=None, ge=5, le=600, description="How long each driver has to answer the offer"
    )


class DeliveryAccepted(BaseModel):
    delivery_id: str
    status: OrderStatus = "QUEUED"
    city: str


class DeliveryView(OrderView):
    delivery_id: str
    customer_id: str
    order_id: str | None = None
    restaurant_id: str | None = None
