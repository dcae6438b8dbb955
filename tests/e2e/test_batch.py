"""Batch matching with real dispatcher processes: the joint assignment where nearest-first would
strand an order, no driver ever offered two orders, no order left unoffered while a free driver
is within reach after the window, rejected orders and retried ones rejoining a later batch, and
orders collected by a dispatcher killed with `kill -9` not lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from rideflow.config import City, Settings
from rideflow.dispatch.audit import audit
from rideflow.redis import keys
from tests.conftest import BLR, api_client, offset
from tests.e2e.test_concurrency import scatter
from tests.fleet import add_driver, answer, events_of, pending_offer, wait_for_status
from tests.servers import Service, eventually

BATCH_CITY = City(
    code="blr", name="Bengaluru", lat=BLR[0], lng=BLR[1], radius_km=30, strategy="batch"
)


def batch_settings(settings: Settings, **overrides: Any) -> Settings:
    """The city's default strategy is batch; long deadlines, offers nobody answers in time."""
    values: dict[str, Any] = {
        "cities": [BATCH_CITY],
        "ride_deadline_s": 60.0,
        "ride_offer_window_s": 60.0,
        "batch_window_s": 1.0,
    }
    return settings.model_copy(update=values | overrides)


async def ride(
    c: httpx.AsyncClient, pickup: tuple[float, float], rider: str, strategy: str | None = None
) -> str:
    body: dict[str, Any] = {
        "rider_id": rider,
        "pickup": {"lat": pickup[0], "lng": pickup[1]},
        "dropoff": {"lat": pickup[0] + 0.02, "lng": pickup[1] + 0.01},
    }
    if strategy:
        body["strategy"] = strategy
    r = await c.post("/v1/rides", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["ride_id"])


async def statuses(c: httpx.AsyncClient, ride_ids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for ride_id in ride_ids:
        r = await c.get(f"/v1/rides/{ride_id}")
        assert r.status_code == 200, r.text
        out[ride_id] = r.json()
    return out


def one_driver_each(rides: dict[str, dict[str, Any]]) -> dict[str, str]:
    """driver -> ride of every offered ride; fails if a driver holds two."""
    holder: dict[str, str] = {}
    for ride_id, body in rides.items():
        if body["status"] == "OFFERED":
            driver = body["driver"]["id"]
            assert driver not in holder, f"{driver} offered {holder[driver]} and {ride_id}"
            holder[driver] = ride_id
    return holder


async def test_the_batch_pairs_jointly_where_nearest_first_strands_an_order(
    settings: Settings, services: Callable[..., Service]
) -> None:
    # Two orders reach the dispatcher together (the batch waits for both: trigger 2, a window
    # longer than the test). Nearest-first gives A the shared driver X (300 m) and leaves B with
    # Z, 4 km away; the batch gives A its second-nearest Y (600 m) and B the driver X (200 m).
    settings = batch_settings(settings, batch_window_s=10.0, batch_trigger_orders=2)
    dispatcher = services("dispatcher", settings)
    a_at, b_at = BLR, offset(*BLR, north_m=500)
    async with api_client(settings) as c:
        await add_driver(c, "x", offset(*BLR, north_m=300))
        await add_driver(c, "y", offset(*BLR, north_m=-600))
        await add_driver(c, "z", offset(*BLR, north_m=4500))
        a = await ride(c, a_at, "rider-a", strategy="batch")
        b = await ride(c, b_at, "rider-b")  # the city's default: batch
        got_a = await wait_for_status(c, a, {"OFFERED"})
        got_b = await wait_for_status(c, b, {"OFFERED"})
        assert (got_a["driver"]["id"], got_b["driver"]["id"]) == ("y", "x")
        assert got_a["strategy"] == got_b["strategy"] == "batch"
        assert 590 < got_a["pickup_distance_m"] < 610 and 190 < got_b["pickup_distance_m"] < 210
        assert (await c.get("/v1/drivers/z")).json()["order_id"] is None
    assert "batch of 2 orders in blr: 2 placed, 0 greedy" in dispatcher.output()


async def test_a_nearest_order_beside_a_batch_is_matched_at_once(
    settings: Settings, services: Callable[..., Service]
) -> None:
    settings = batch_settings(settings, batch_window_s=10.0, batch_trigger_orders=2)
    services("dispatcher", settings)
    async with api_client(settings) as c:
        await add_driver(c, "x", offset(*BLR, north_m=300))
        waits = await ride(c, BLR, "rider-a")
        greedy = await ride(c, BLR, "rider-b", strategy="nearest")
        assert (await wait_for_status(c, greedy, {"OFFERED"}))["driver"]["id"] == "x"
        # The batch order waits for its window (or a second order), SEARCHING, not lost.
        assert (await c.get(f"/v1/rides/{waits}")).json()["status"] == "SEARCHING"


async def test_many_orders_few_drivers_never_two_orders_per_driver_and_nobody_left_waiting(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    settings = batch_settings(settings)
    services("dispatcher", settings, name="dispatcher-a")
    services("dispatcher", settings, name="dispatcher-b")
    async with api_client(settings) as c:
        first = [f"d{i}" for i in range(20)]
        for driver, at in zip(first, scatter(20, 1500, seed=3), strict=True):
            await add_driver(c, driver, at)
        rides = [await ride(c, at, f"r{i}") for i, at in enumerate(scatter(35, 1500, seed=4))]

        async def twenty_offered() -> dict[str, dict[str, Any]] | None:
            now = await statuses(c, rides)
            offered = [r for r in now.values() if r["status"] == "OFFERED"]
            return now if len(offered) == 20 else None

        now = await eventually(twenty_offered, 30, "every driver to be offered one order")
        assert sorted(one_driver_each(now)) == sorted(first)
        assert {r["status"] for r in now.values()} == {"OFFERED", "SEARCHING"}
        assert await redis.zcard(keys.pool("blr")) == 0

        # More drivers come: the waiting orders (retrying) rejoin a batch and are offered.
        more = [f"e{i}" for i in range(20)]
        for driver, at in zip(more, scatter(20, 1500, seed=5), strict=True):
            await add_driver(c, driver, at)

        async def all_offered() -> dict[str, dict[str, Any]] | None:
            now = await statuses(c, rides)
            return now if all(r["status"] == "OFFERED" for r in now.values()) else None

        now = await eventually(all_offered, 30, "the waiting orders to be offered")
        holders = one_driver_each(now)
        assert len(holders) == 35 and set(first) <= set(holders)
        # Five drivers are left free, and no order waits.
        assert await redis.zcard(keys.pool("blr")) == 5
    assert await audit(redis, ["blr"]) == []


async def test_a_rejected_order_rejoins_the_next_batch(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    settings = batch_settings(settings, batch_window_s=0.5)
    dispatcher = services("dispatcher", settings)
    async with api_client(settings) as c:
        await add_driver(c, "near", offset(*BLR, north_m=200))
        await add_driver(c, "far", offset(*BLR, north_m=-1500))
        ride_id = await ride(c, BLR, "rider-a")
        await wait_for_status(c, ride_id, {"OFFERED"})
        offer = await pending_offer(c, "near")
        assert offer is not None
        r = await answer(c, offer, "reject")
        assert r.status_code == 200, r.text

        async def offered_far() -> bool:
            body = (await c.get(f"/v1/rides/{ride_id}")).json()
            return bool(body["status"] == "OFFERED" and body["driver"]["id"] == "far")

        await eventually(offered_far, 20, "the next driver's offer")
        events = await events_of(c, ride_id)
        assert [e["status"] for e in events] == [
            "QUEUED",
            "SEARCHING",
            "OFFERED",
            "SEARCHING",
            "OFFERED",
        ]
        assert [e.get("driver_id") for e in events if e["status"] == "OFFERED"] == [
            "near",
            "far",
        ]
    log = dispatcher.output()
    assert log.count("batch of 1 orders in blr: 1 placed") == 2, log
    assert await audit(redis, ["blr"]) == []


async def test_orders_collected_by_a_killed_dispatcher_are_not_lost(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    # A window far longer than the test: the first dispatcher only collects.
    settings = batch_settings(settings, batch_window_s=10.0, batch_trigger_orders=1000)
    first = services("dispatcher", settings, name="dispatcher-a")
    async with api_client(settings) as c:
        drivers = [f"d{i}" for i in range(6)]
        for driver, at in zip(drivers, scatter(6, 1000, seed=8), strict=True):
            await add_driver(c, driver, at)
        rides = [await ride(c, at, f"r{i}") for i, at in enumerate(scatter(6, 1000, seed=9))]

        async def collected() -> bool:
            now = await statuses(c, rides)
            return all(r["status"] == "SEARCHING" for r in now.values())

        await eventually(collected, 20, "the orders to be collected")
        pending = await redis.xpending(keys.requests("blr"), keys.DISPATCH_GROUP)
        assert pending["pending"] == 6  # collected, not acknowledged
        first.kill9()
        services("dispatcher", settings.model_copy(update={"batch_window_s": 0.5}), name="b")

        async def all_offered() -> dict[str, dict[str, Any]] | None:
            now = await statuses(c, rides)
            return now if all(r["status"] == "OFFERED" for r in now.values()) else None

        now = await eventually(all_offered, 30, "the collected orders to be offered")
        assert sorted(one_driver_each(now)) == drivers
    pending = await redis.xpending(keys.requests("blr"), keys.DISPATCH_GROUP)
    assert pending["pending"] == 0
    assert await audit(redis, ["blr"]) == []
