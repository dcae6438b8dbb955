"""Fixtures of the script contract tests: the scripts bound to the session's flushed Redis, and
helpers that put drivers and orders in place with plain commands."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from rideflow.redis import keys
from rideflow.redis.scripts import Scripts

CITY = "blr"
LNG, LAT = 77.5946, 12.9716


@pytest.fixture
def scripts(redis: Redis) -> Scripts:
    return Scripts.register(redis)


async def now_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds * 1000 + micros // 1000)


async def put_driver(
    redis: Redis, driver_id: str, *, status: str = "online", order: str = "", pooled: bool = True
) -> None:
    """A driver with a fresh position at the city centre, in the pool unless told not."""
    seen = await now_ms(redis)
    await redis.hset(
        keys.driver(CITY, driver_id),
        mapping={
            "id": driver_id,
            "name": f"Driver {driver_id}",
            "rating": "4.5",
            "vehicle": "KA01",
            "status": status,
            "order": order,
            "offer": "",
            "lapses": 0,
            "lat": LAT,
            "lng": LNG,
            "seen": seen,
        },
    )
    await redis.zadd(keys.seen(CITY), {driver_id: seen})
    if pooled:
        await redis.geoadd(keys.pool(CITY), (LNG, LAT, driver_id))


async def put_order(
    redis: Redis, order_id: str, status: str = "SEARCHING", *, deadline_s: float = 60.0,
    window_ms: int = 15_000, **extra: str,
) -> None:  # fmt: skip
    """An order hash as order_enqueue leaves it, in `status`."""
    now = await now_ms(redis)
    await redis.hset(
        keys.order(CITY, order_id),
        mapping={
            "id": order_id,
            "kind": "ride",
            "status": status,
            "pickup": f"{LAT},{LNG}",
            "strategy": "nearest",
            "attempts": 0,
            "offers": 0,
            "window_ms": window_ms,
            "deadline": int((now + deadline_s * 1000) * 1000),
            "t_QUEUED": now * 1000,
            **extra,
        },
    )


async def events(redis: Redis, order_id: str) -> list[dict[str, str]]:
    """The order's event stream's fields, oldest first."""
    return [f for _, f in await redis.xrange(keys.order_events(CITY, order_id))]


async def city_events(redis: Redis) -> list[dict[str, str]]:
    return [f for _, f in await redis.xrange(keys.city_events(CITY))]
