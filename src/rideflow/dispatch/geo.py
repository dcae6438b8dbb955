"""Candidate search over a city's pool of available drivers."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rideflow import keys
from rideflow.dispatch.matcher import Candidate


async def queue_nearby(
    client: Redis, city: str, lat: float, lng: float, radius_m: float, count: int
) -> Any:
    """Send (or queue on a pipeline) a GEOSEARCH for the `count` nearest pool drivers."""
    return await client.geosearch(
        keys.pool(city),
        longitude=lng,
        latitude=lat,
        radius=radius_m,
        unit="m",
        sort="ASC",
        count=count,
        withdist=True,
    )


def candidates(reply: list[list[Any]]) -> list[Candidate]:
    """Candidates from a GEOSEARCH ... WITHDIST reply."""
    return [Candidate(str(member), float(dist)) for member, dist in reply]


async def nearby(
    client: Redis, city: str, lat: float, lng: float, radius_m: float, count: int
) -> list[Candidate]:
    """The `count` nearest available drivers within `radius_m`, nearest first."""
    return candidates(await queue_nearby(client, city, lat, lng, radius_m, count))
