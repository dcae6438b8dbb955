"""Candidate search over a city's pool of available drivers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
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


async def with_profiles(client: Redis, city: str, found: list[Candidate]) -> list[Candidate]:
    """The candidates with their ratings and recent speeds, read in one round trip."""
    if not found:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for c in found:
            pipe.hmget(keys.driver(city, c.driver_id), ["rating", "speed"])
        profiles = await pipe.execute()
    return [
        replace(c, rating=_number(rating), speed_mps=_number(speed))
        for c, (rating, speed) in zip(found, profiles, strict=True)
    ]


def _number(value: str | None) -> float | None:
    return float(value) if value else None
