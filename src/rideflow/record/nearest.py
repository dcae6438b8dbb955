"""The k drivers whose last recorded position (`drivers` table) is nearest a point, with the
distance in metres. For the record's own spatial questions; live matching stays on Redis GEO.

Both databases give the same answer for the same rows: the final order is the great-circle
(haversine, mean Earth radius) distance, ties broken by (city, id), computed here. What differs is
how the candidates are found:

- PostgreSQL + PostGIS: `ORDER BY geom <-> point LIMIT k`, a KNN walk of the GiST index. That
  orders by planar degrees, which at 13 degrees N stretch east-west distances by 1/cos(lat), so
  its k-th hit only bounds the answer: every true k-nearest driver lies within the haversine
  distance R of that k-th hit, and one more index scan (`geom && box(R)`) fetches them all.
- SQLite: a lat/lng box around the point, widened (x4 area each time) until it holds k drivers;
  then, as above, every driver within the k-th distance R (again a box) is ranked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rideflow.record.db import Record
from rideflow.record.reads import reading

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180
FIRST_BOX_M = 500.0
MAX_K = 100
COLUMNS = "city, id, name, vehicle, rating, status, lat, lng, seen_us"

KNN_SQL = (
    "SELECT lat, lng FROM drivers WHERE geom IS NOT NULL AND (CAST(:city AS TEXT) IS NULL "
    "OR city = :city) ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:lng, :lat), 4326) LIMIT :k"
)
"""The PostGIS KNN step (the GiST index walked in distance order)."""
BOX_SQL = {
    "postgresql": (
        f"SELECT {COLUMNS} FROM drivers WHERE geom && "
        "ST_MakeEnvelope(:west, :south, :east, :north, 4326) "
        "AND (CAST(:city AS TEXT) IS NULL OR city = :city)"
    ),
    "sqlite": (
        f"SELECT {COLUMNS} FROM drivers WHERE lat BETWEEN :south AND :north "
        "AND lng BETWEEN :west AND :east AND lat IS NOT NULL AND lng IS NOT NULL "
        "AND (:city IS NULL OR city = :city)"
    ),
}
COUNT_BOX_SQL = (
    "SELECT count(*) FROM drivers WHERE lat BETWEEN :south AND :north "
    "AND lng BETWEEN :west AND :east AND (:city IS NULL OR city = :city)"
)


@dataclass(frozen=True, slots=True)
class NearDriver:
    city: str
    id: str
    name: str | None
    vehicle: str | None
    rating: float | None
    status: str | None
    lat: float
    lng: float
    seen_us: int | None
    distance_m: float


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def box(lat: float, lng: float, radius_m: float) -> dict[str, float]:
    """A lat/lng box holding every point within `radius_m` of (lat, lng) (1 % to spare);
    the whole longitude range near a pole or across the antimeridian."""
    dlat = radius_m * 1.01 / METRES_PER_DEGREE
    south, north = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    widest = max(abs(south), abs(north))
    if widest >= 89.0:
        return {"south": south, "north": north, "west": -180.0, "east": 180.0}
    dlng = dlat / math.cos(math.radians(widest))
    west, east = lng - dlng, lng + dlng
    if west < -180.0 or east > 180.0:
        west, east = -180.0, 180.0
    return {"south": south, "north": north, "west": west, "east": east}


async def _radius_postgres(
    session: AsyncSession, lat: float, lng: float, k: int, city: str | None
) -> float | None:
    """The haversine distance of the KNN walk's k-th hit (None: fewer than k drivers)."""
    rows = (
        await session.execute(text(KNN_SQL), {"lat": lat, "lng": lng, "k": k, "city": city})
    ).all()
    if len(rows) < k:
        return None
    return max(haversine_m(lat, lng, r.lat, r.lng) for r in rows)


async def _radius_sqlite(
    session: AsyncSession, lat: float, lng: float, k: int, city: str | None
) -> float | None:
    """A radius whose box holds at least k drivers, widened from FIRST_BOX_M (None: fewer than
    k drivers in all)."""
    radius = FIRST_BOX_M
    while True:
        bounds = box(lat, lng, radius)
        found = await session.scalar(text(COUNT_BOX_SQL), {**bounds, "city": city})
        if (found or 0) >= k:
            break
        if bounds["west"] == -180.0 and bounds["east"] == 180.0 and radius > math.pi * 6.4e6:
            return None  # the box is the whole Earth
        radius *= 2
    # The box holds k drivers, but its corners reach past `radius`: the k-th nearest of them
    # is no farther than the box's diagonal, and bounds the answer like the KNN's k-th hit.
    rows = (await session.execute(text(BOX_SQL["sqlite"]), {**bounds, "city": city})).all()
    distances = sorted(haversine_m(lat, lng, r.lat, r.lng) for r in rows)
    return distances[k - 1]


def _ranked(rows: Any, lat: float, lng: float, k: int) -> list[NearDriver]:
    found = [
        NearDriver(
            city=r.city,
            id=r.id,
            name=r.name,
            vehicle=r.vehicle,
            rating=r.rating,
            status=r.status,
            lat=r.lat,
            lng=r.lng,
            seen_us=r.seen_us,
            distance_m=haversine_m(lat, lng, r.lat, r.lng),
        )
        for r in rows
    ]
    found.sort(key=lambda d: (d.distance_m, d.city, d.id))
    return found[:k]


async def nearest(
    record: Record, lat: float, lng: float, k: int, city: str | None = None
) -> list[NearDriver]:
    """The k recorded drivers nearest (lat, lng), nearest first, of `city` when given."""
    dialect = "postgresql" if record.postgres else "sqlite"
    async with reading(record) as session:
        if record.postgres:
            radius = await _radius_postgres(session, lat, lng, k, city)
        else:
            radius = await _radius_sqlite(session, lat, lng, k, city)
        if radius is None:  # fewer than k drivers: all of them
            bounds = {"south": -90.0, "north": 90.0, "west": -180.0, "east": 180.0}
        else:
            bounds = box(lat, lng, radius)
        rows = (await session.execute(text(BOX_SQL[dialect]), {**bounds, "city": city})).all()
    return _ranked(rows, lat, lng, k)
