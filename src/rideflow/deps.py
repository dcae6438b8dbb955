"""Dependency aliases, defined once; route functions read like the API they serve.

The providers are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool,
which costs more than the request itself on the hot path."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from redis.asyncio import Redis

from rideflow.drivers import Drivers
from rideflow.rides import Rides


async def _rides(request: Request) -> Rides:
    rides: Rides = request.state.rides
    return rides


async def _drivers(request: Request) -> Drivers:
    drivers: Drivers = request.state.drivers
    return drivers


async def _redis(request: Request) -> Redis:
    redis: Redis = request.state.redis
    return redis


RidesDep = Annotated[Rides, Depends(_rides)]
DriversDep = Annotated[Drivers, Depends(_drivers)]
RedisDep = Annotated[Redis, Depends(_redis)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a creation safely: the same key returns the first result",
    ),
]
