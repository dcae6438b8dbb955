"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rideflow.config import Strategy

ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
Lat = Annotated[float, Field(ge=-90, le=90, description="WGS84 latitude in degrees")]
Lng = Annotated[float, Field(ge=-180, le=180, description="WGS84 longitude in degrees")]
OrderStatus = Literal[
    "QUEUED",
    "SEARCHING",
    "OFFERED",
    "ACCEPTED",
    "DRIVER_ARRIVING",
    "PICKED_UP",
    "COMPLETED",
    "DELIVERED",
    "CANCELLED",
    "NO_DRIVER_FOUND",
]
OfferStatus = Literal["PENDING", "ACCEPTED", "REJECTED", "EXPIRED", "WITHDRAWN"]
STRATEGY_DOC = (
    "nearest; rating (best rated within the radius, distance breaks ties); eta "
    "(distance over the driver's recent speed). The city's default when absent."
)


class Body(BaseModel):
    """Request bodies refuse fields they do not know, so a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class Point(Body):
    lat: Lat
    lng: Lng


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

    rider_id: Id
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


class RideView(OrderView):
    ride_id: str
    rider_id: str


class OrderEvent(BaseModel):
    id: str = Field(description="Stream id; pass it as `after` to read only later events")
    status: OrderStatus
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
    """A driver moving their order along: they name themselves (until JWT roles arrive)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"driver_id": "D4"}]})

    driver_id: Id


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

    customer_id: Id
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
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"driver_id": "D4", "token": 1042}]}
    )

    driver_id: Id
    token: int = Field(ge=1, description="The offer's fencing token")


class OfferAnswered(BaseModel):
    offer_id: str
    order_id: str
    status: OfferStatus
    order_status: OrderStatus
    at: datetime


class DriverCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"id": "D4", "name": "Rohit Sharma", "rating": 4.8, "vehicle": "Bike · KA01HX2847"}
            ]
        },
    )

    id: Id
    name: str = Field(min_length=1, max_length=120)
    rating: float = Field(default=5.0, ge=0, le=5)
    vehicle: str = Field(default="", max_length=120)
    city: str | None = Field(default=None, description="City code; the default city when absent")


class Position(BaseModel):
    lat: float
    lng: float
    recorded_at: datetime


class DriverView(BaseModel):
    id: str
    name: str
    rating: float
    vehicle: str
    city: str
    status: Literal["online", "offline"]
    order_id: str | None = Field(default=None, description="The order offered to or held by them")
    offer_id: str | None = Field(default=None, description="Their pending offer")
    position: Position | None = None
    speed_mps: float | None = None


class DriverStatusUpdate(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "online"}]}
    )

    status: Literal["online", "offline"]


class Location(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"lat": 12.9716, "lng": 77.5946}]}
    )

    lat: Lat
    lng: Lng
    recorded_at: datetime | None = Field(
        default=None, description="When the device took the fix (UTC); now when absent"
    )
    speed_mps: float | None = Field(default=None, ge=0, le=100)


class DriverLocation(Location):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"driver_id": "D4", "lat": 12.9716, "lng": 77.5946}]},
    )

    driver_id: Id


class LocationBatch(Body):
    positions: list[DriverLocation] = Field(min_length=1, max_length=5000)


class RejectedLocation(BaseModel):
    index: int
    driver_id: str
    reason: str


class LocationBatchResult(BaseModel):
    accepted: int
    rejected: list[RejectedLocation]


class SeedRideRequest(Body):
    """The body of `POST /request-ride` exactly as the original ride queue service takes it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rider_id": 1,
                    "pickup_lat": 12.97,
                    "pickup_lng": 77.59,
                    "dest_lat": 13.01,
                    "dest_lng": 77.60,
                }
            ]
        },
    )

    rider_id: int | Id
    pickup_lat: Lat
    pickup_lng: Lng
    dest_lat: Lat
    dest_lng: Lng


class SeedRideQueued(BaseModel):
    message: str = "Ride queued successfully"
    ride_id: str
    status: OrderStatus = "QUEUED"


class Health(BaseModel):
    status: str
