"""Service areas: which city holds a point."""

from __future__ import annotations

import math
from collections.abc import Iterator

from rideflow.config import City

EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


class CityMap:
    """The configured cities, looked up by code or by a point inside them."""

    def __init__(self, cities: list[City]) -> None:
        self._by_code = {c.code: c for c in cities}

    def __iter__(self) -> Iterator[City]:
        return iter(self._by_code.values())

    @property
    def codes(self) -> list[str]:
        """Every city code."""
        return list(self._by_code)

    def get(self, code: str) -> City | None:
        """The city with this code, if configured."""
        return self._by_code.get(code)

    def locate(self, lat: float, lng: float) -> City | None:
        """The city whose service area holds the point; the nearest centre wins an overlap."""
        best: tuple[float, City] | None = None
        for city in self._by_code.values():
            d = distance_m(lat, lng, city.lat, city.lng)
            if d <= city.radius_km * 1000 and (best is None or d < best[0]):
                best = (d, city)
        return best[1] if best else None


def area_text(city: City) -> str:
    """How a person reads a service area."""
    return f"{city.code} ({city.name}): within {city.radius_km:g} km of {city.lat}, {city.lng}"
