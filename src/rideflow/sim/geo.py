"""Points, distances and straight-line moves on a small patch of the Earth. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_M = 6_371_000.0
M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True, slots=True)
class LatLng:
    lat: float
    lng: float

    def json(self) -> dict[str, float]:
        return {"lat": round(self.lat, 6), "lng": round(self.lng, 6)}


def distance_m(a: LatLng, b: LatLng) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lng - a.lng)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_M * math.asin(min(1.0, math.sqrt(h)))


def offset(p: LatLng, north_m: float, east_m: float) -> LatLng:
    """The point `north_m` north and `east_m` east of `p` (flat-Earth: fine over a city)."""
    dlat = north_m / M_PER_DEG_LAT
    dlng = east_m / (M_PER_DEG_LAT * math.cos(math.radians(p.lat)))
    return LatLng(p.lat + dlat, p.lng + dlng)


def toward(a: LatLng, b: LatLng, step_m: float) -> LatLng:
    """The point `step_m` from `a` on the straight segment to `b` (`b` itself if nearer)."""
    d = distance_m(a, b)
    if d <= step_m or d == 0:
        return b
    f = step_m / d
    return LatLng(a.lat + (b.lat - a.lat) * f, a.lng + (b.lng - a.lng) * f)
