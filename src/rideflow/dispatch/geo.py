"""Candidate search over a city's pool of available drivers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis

from rideflow.dispatch.matcher import Candidate
from rideflow.redis import keys


def pairs(flat: Sequence[Any]) -> list[Candidate]:
    """Candidates from a flat [driver id, distance, driver id, distance, ...] reply."""
    return [Candidate(str(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]


async def nearby(
    client: Redis, city: str, lat: float, lng: float, radius_m: float, count: int
) -> list[Candidate]:
    """The `count` nearest drivers of the pool within `radius_m`, nearest first."""
    reply = await client.geosearch(
        keys.pool(city),
        longitude=lng,
        latitude=lat,
        radius=radius_m,
        unit="m",
        sort="ASC",
        count=count,
        withdist=True,
    )
    return [Candidate(str(hit[0]), float(hit[1])) for hit in cast(list[list[str]], reply)]
