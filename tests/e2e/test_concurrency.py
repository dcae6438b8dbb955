"""Races between real processes: many rides for few drivers, and a dispatcher killed mid-work."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.dispatch.audit import audit
from rideflow.redis import keys
from rideflow.redis.connections import sync_client
from tests.conftest import BLR, offset
from tests.servers import Service, post_many, send_many, wait_until

LIVE = {"QUEUED", "SEARCHING"}
SETTLED = {"OFFERED", "COMPLETED", "CANCELLED", "NO_DRIVER_FOUND"}
"""Where a ride rests when nobody answers offers (the window outlasts these tests)."""


def scatter(n: int, radius_m: float, seed: int) -> list[tuple[float, float]]:
    """Points in a square of half-side `radius_m` round Bengaluru; keep it under 1.7 km so that
    any two points are within the 5 km search radius and every ride can reach every driver."""
    rng = random.Random(seed)
    return [
        offset(
            *BLR, north_m=rng.uniform(-radius_m, radius_m), east_m=rng.uniform(-radius_m, radius_m)
        )
        for _ in range(n)
    ]


async def register_drivers(port: int, ids: list[str], positions: list[tuple[float, float]]) -> None:
    """Register drivers through the API, at their positions and online."""
    created = await send_many(port, [("POST", "/v1/drivers", {"id": i, "name": i}) for i in ids])
    assert all(status == 201 for status, _ in created), created[:3]
    fixes = [
        {"driver_id": i, "lat": p[0], "lng": p[1]} for i, p in zip(ids, positions, strict=True)
    ]
    ((status, body),) = await post_many(port, "/v1/drivers/locations", [{"positions": fixes}])
    assert status == 200 and orjson.loads(body)["accepted"] == len(ids), body
    online = {"status": "online"}
    answers = await send_many(port, [("PUT", f"/v1/drivers/{i}/status", online) for i in ids])
    assert all(status == 200 for status, _ in answers), answers[:3]


async def post_rides(port: int, pickups: list[tuple[float, float]]) -> list[str]:
    """Request all rides at once over keep-alive connections; every one must be accepted (a
    request whose connection dropped is sent again under its Idempotency-Key: one ride)."""
    bodies = [
        {
            "rider_id": f"r{i}",
            "pickup": {"lat": p[0], "lng": p[1]},
            "dropoff": {"lat": BLR[0], "lng": BLR[1]},
        }
        for i, p in enumerate(pickups)
    ]
    answers = await post_many(port, "/v1/rides", bodies, [f"r{i}" for i in range(len(bodies))])
    assert all(status == 202 for status, _ in answers), [a for a in answers if a[0] != 202][:3]
    return [str(orjson.loads(body)["ride_id"]) for _, body in answers]


async def rides_state(redis: Redis, ride_ids: list[str]) -> list[dict[str, Any]]:
    async with redis.pipeline(transaction=False) as pipe:
        for ride_id in ride_ids:
            pipe.hgetall(keys.order("blr", ride_id))
        return list(await pipe.execute())


async def assert_one_driver_one_ride(redis: Redis, rides: list[dict[str, Any]]) -> Counter[str]:
    """No driver holds two rides, every offered ride names one driver, and each such driver
    points back at that ride."""
    assigned = [r for r in rides if r["status"] == "OFFERED"]
    by_driver = Counter(r["driver"] for r in assigned)
    twice = {d: n for d, n in by_driver.items() if n > 1}
    assert not twice, f"drivers assigned twice: {twice}"
    async with redis.pipeline(transaction=False) as pipe:
        for r in assigned:
            pipe.hget(keys.driver("blr", r["driver"]), "order")
        held = await pipe.execute()
    assert held == [r["id"] for r in assigned]
    return Counter(r["status"] for r in rides)


async def all_final(redis: Redis, ride_ids: list[str], within: float) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        rides = await rides_state(redis, ride_ids)
        assert all(rides), "a ride was lost"
        if all(r["status"] in SETTLED for r in rides):
            return rides
        pending = Counter(r["status"] for r in rides if r["status"] in LIVE)
        assert asyncio.get_running_loop().time() < deadline, f"rides still live: {pending}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_thousand_rides_for_hundred_drivers_two_dispatchers(
    settings: Settings, services: Callable[..., Any], redis: Redis
) -> None:
    settings = settings.model_copy(update={"ride_deadline_s": 3.0})
    api = services("api", settings)
    services("dispatcher", settings, concurrency=16)
    services("dispatcher", settings, concurrency=16)
    drivers = [f"d{i}" for i in range(100)]
    await register_drivers(api.port, drivers, scatter(100, 1500, seed=1))
    ride_ids = await post_rides(api.port, scatter(1000, 1500, seed=2))
    assert len(set(ride_ids)) == 1000
    rides = await all_final(redis, ride_ids, within=30)
    statuses = await assert_one_driver_one_ride(redis, rides)
    assert statuses["OFFERED"] == 100, statuses
    assert statuses["NO_DRIVER_FOUND"] == 900, statuses
    assert await redis.zcard(keys.pool("blr")) == 0
    assert await audit(redis, ["blr"]) == []


def frozen_with_work(dispatcher: Service, sync_redis: Any) -> bool:
    """Freeze the dispatcher; keep it frozen only if it holds unacknowledged entries."""
    os.kill(dispatcher.pid, signal.SIGSTOP)
    consumers = sync_redis.xinfo_consumers(keys.requests("blr"), keys.DISPATCH_GROUP)
    if any(c["pending"] > 0 for c in consumers):
        return True
    os.kill(dispatcher.pid, signal.SIGCONT)
    return False


@pytest.mark.slow
async def test_dispatcher_killed_mid_work_loses_nothing(
    settings: Settings, services: Callable[..., Any], redis: Redis
) -> None:
    settings = settings.model_copy(update={"ride_deadline_s": 60.0, "claim_idle_ms": 500})
    n = 1500
    api = services("api", settings)
    first = services("dispatcher", settings, name="victim", concurrency=4)
    sync = sync_client(settings.redis_url or "", decode_responses=True)
    await register_drivers(api.port, [f"d{i}" for i in range(n)], scatter(n, 1500, seed=3))
    posting = asyncio.create_task(post_rides(api.port, scatter(n, 1500, seed=4)))
    await asyncio.to_thread(
        wait_until,
        lambda: frozen_with_work(first, sync),
        20,
        "the dispatcher to hold unacknowledged rides",
    )
    held = sum(
        x["pending"] for x in sync.xinfo_consumers(keys.requests("blr"), keys.DISPATCH_GROUP)
    )
    first.kill9()
    ride_ids = await posting
    assert held > 0
    second = services("dispatcher", settings, name="successor", concurrency=8)
    rides = await all_final(redis, ride_ids, within=60)
    statuses = await assert_one_driver_one_ride(redis, rides)
    assert statuses["OFFERED"] == n, statuses
    assert await audit(redis, ["blr"]) == []
    assert second.stop() == 0
    assert "reclaimed=" in second.output()
    sync.close()
