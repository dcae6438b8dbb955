"""Request and response bodies of drivers: registration, status, positions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rideflow.schemas import Body, Id, Lat, Lng


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
