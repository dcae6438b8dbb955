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
RideStatus = Literal["QUEUED", "SEARCHING", "ASSIGNED", "COMPLETED", "CANCELLED", "NO_DRIVER_FOUND"]


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
    strategy: Strategy | None = Field(
        default=None,
        description="nearest; rating (best rated within the radius, distance breaks ties); eta "
        "(distance over the driver's recent speed). The city's default when absent.",
    )


class RideAccepted(BaseModel):
    ride_id: str
    status: RideStatus = "QUEUED"
    city: str


class DriverBrief(BaseModel):
    id: str
    name: str
    rating: float
    vehicle: str


class RideView(BaseModel):
    ride_id: str
    city: str
    rider_id: str
    status: RideStatus
    strategy: Strategy
    pickup: Point
    dropoff: Point
    driver: DriverBrief | None = None
    pickup_distance_m: float | None = Field(
        default=None, description="Distance from the assigned driver to the pickup when assigned"
    )
    attempts: int = Field(description="Searches that found no driver so far")
    reason: str | None = None
    created_at: datetime
    transitions: dict[str, datetime] = Field(description="When the ride entered each status")


class RideEvent(BaseModel):
    id: str = Field(description="Stream id; pass it as `after` to read only later events")
    status: RideStatus
    at: datetime
    driver_id: str | None = None
    pickup_distance_m: float | None = None
    reason: str | None = None


class RideEvents(BaseModel):
    ride_id: str
    events: list[RideEvent]


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
    ride_id: str | None = None
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
    status: RideStatus = "QUEUED"


class Health(BaseModel):
    status: str
