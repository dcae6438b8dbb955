"""Administration reads from the record: dispatch analytics per time bucket, and the drivers
whose last recorded position is nearest a point. ADMIN only."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from rideflow.api.deps import RecordDep
from rideflow.api.history import epoch_us
from rideflow.api.problems import responses
from rideflow.api.security import AdminCaller
from rideflow.record import analytics, nearest
from rideflow.redis.clock import from_us
from rideflow.schemas import ID_PATTERN

router = APIRouter(prefix="/v1/admin", tags=["admin"])
DAY_US = 86_400 * 1_000_000


@router.get(
    "/analytics",
    response_model=analytics.Analytics,
    responses=responses(422),
    summary="Dispatch analytics per time bucket, from the record",
    description=(analytics.__doc__ or "").split("\n\n", 1)[-1]
    + f"\nAt most {analytics.MAX_BUCKETS} buckets; `to` defaults to now, `from` to a day "
    "before `to`.",
)
async def get_analytics(
    caller: AdminCaller,
    record: RecordDep,
    start: Annotated[
        datetime | None, Query(alias="from", description="Start (ISO-8601; naive means UTC)")
    ] = None,
    to: Annotated[datetime | None, Query(description="End, excluded (default: now)")] = None,
    bucket: Annotated[
        str, Query(max_length=8, description="Bucket size: <n>m, <n>h or <n>d")
    ] = "1h",
) -> analytics.Analytics:
    to_us = epoch_us(to, "to") if to is not None else time.time_ns() // 1000
    from_us_ = epoch_us(start, "from") if start is not None else to_us - DAY_US
    return await analytics.analytics(record, from_us_, to_us, bucket)


class NearDriver(BaseModel):
    id: str
    city: str
    name: str | None
    vehicle: str | None
    rating: float | None
    status: str | None
    lat: float
    lng: float
    seen_at: datetime | None = Field(description="When this position was recorded")
    distance_m: float = Field(description="Great-circle distance to the point, in metres")


class Nearest(BaseModel):
    lat: float
    lng: float
    k: int
    drivers: list[NearDriver]


@router.get(
    "/drivers/nearest",
    response_model=Nearest,
    responses=responses(422),
    summary="The k drivers whose last recorded position is nearest a point",
    description="From the record (SQL; PostGIS KNN on PostgreSQL), nearest first. Not the "
    "live pool: dispatch searches Redis GEO.",
)
async def get_nearest(
    caller: AdminCaller,
    record: RecordDep,
    lat: Annotated[float, Query(ge=-90, le=90, description="WGS84 latitude")],
    lng: Annotated[float, Query(ge=-180, le=180, description="WGS84 longitude")],
    k: Annotated[int, Query(ge=1, le=nearest.MAX_K, description="How many drivers")] = 10,
    city: Annotated[str | None, Query(min_length=1, max_length=16, pattern=ID_PATTERN)] = None,
) -> Nearest:
    found = await nearest.nearest(record, lat, lng, k, city)
    return Nearest(
        lat=lat,
        lng=lng,
        k=k,
        drivers=[
            NearDriver(
                id=d.id,
                city=d.city,
                name=d.name,
                vehicle=d.vehicle,
                rating=d.rating,
                status=d.status,
                lat=d.lat,
                lng=d.lng,
                seen_at=None if d.seen_us is None else from_us(d.seen_us),
                distance_m=round(d.distance_m, 2),
            )
            for d in found
        ],
    )
