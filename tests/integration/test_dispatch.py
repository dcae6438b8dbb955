"""Through the HTTP API, the app and a dispatcher in-process: who gets matched, and who never."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.redis import keys
from rideflow.services import build_services
from tests.conftest import BLR, Workers, api_client, offset
from tests.fleet import add_driver, finish, request_ride, take, wait_for_status
from tests.servers import eventually

SEED_BODY = b"""{
"rider_id": 1,
"pickup_lat": 12.97,
"pickup_lng": 77.59,
"dest_lat": 13.01,
"dest_lng": 77.60
}"""


async def test_nearest_eligible_driver_is_assigned_and_ineligible_never(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    settings = settings.model_copy(update={"ride_deadline_s": 1.5})
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        long_ago = datetime.now(UTC) - timedelta(seconds=settings.driver_stale_s + 30)
        await add_driver(c, "stale", offset(*BLR, north_m=100))
        # Silent since long ago (a fix that old is refused at the API): its last-seen score aged.
        await redis.zadd(keys.seen("blr"), {"stale": long_ago.timestamp() * 1000})
        await add_driver(c, "offline", offset(*BLR, east_m=150), online=False)
        await add_driver(c, "far", offset(*BLR, north_m=6000))
        await add_driver(c, "near", offset(*BLR, north_m=-800))
        await add_driver(c, "next", offset(*BLR, east_m=-1500))

        first = await wait_for_status(c, await request_ride(c, BLR), {"OFFERED"})
        assert first["driver"]["id"] == "near"
        assert 780 < first["pickup_distance_m"] < 820
        assert list(first["transitions"]) == ["QUEUED", "SEARCHING", "OFFERED"]
        await take(c, first["ride_id"])

        second = await wait_for_status(c, await request_ride(c, BLR, "rider-2"), {"OFFERED"})
        assert second["driver"]["id"] == "next"

        # Only ineligible drivers are left: stale, offline, out of radius.
        third = await wait_for_status(
            c, await request_ride(c, BLR, "rider-3"), {"OFFERED", "NO_DRIVER_FOUND"}
        )
        assert third["status"] == "NO_DRIVER_FOUND" and third["driver"] is None
        assert third["attempts"] >= 2  # searched again with backoff until the deadline

        # A completed ride gives its driver back to the pool.
        assert (await finish(c, first["ride_id"]))["status"] == "COMPLETED"
        fourth = await wait_for_status(c, await request_ride(c, BLR, "rider-4"), {"OFFERED"})
        assert fourth["driver"]["id"] == "near"

        # Every transition is in the ride's own event stream, in order, resumable.
        events = (await c.get(f"/v1/rides/{first['ride_id']}/events")).json()["events"]
        assert [e["status"] for e in events] == [
            "QUEUED",
            "SEARCHING",
            "OFFERED",
            "ACCEPTED",
            "DRIVER_ARRIVING",
            "PICKED_UP",
            "COMPLETED",
        ]
        assert events[2]["driver_id"] == "near" and events[2]["pickup_distance_m"] > 780
        assert [e["at"] for e in events] == sorted(e["at"] for e in events)
        later = await c.get(
            f"/v1/rides/{first['ride_id']}/events", params={"after": events[1]["id"]}
        )
        assert [e["status"] for e in later.json()["events"]][:2] == ["OFFERED", "ACCEPTED"]
        third_events = (await c.get(f"/v1/rides/{third['ride_id']}/events")).json()["events"]
        assert third_events[-1]["status"] == "NO_DRIVER_FOUND" and third_events[-1]["reason"]
        assert (await c.get("/v1/rides/blr-nope/events")).status_code == 404
        bad = await c.get(f"/v1/rides/{first['ride_id']}/events", params={"after": "x"})
        assert bad.status_code == 422

        # Cancelling an offered ride frees its driver at once.
        r = await c.post(f"/v1/rides/{fourth['ride_id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
        assert (await c.get("/v1/drivers/near")).json()["order_id"] is None
        fifth = await wait_for_status(c, await request_ride(c, BLR, "rider-5"), {"OFFERED"})
        assert fifth["driver"]["id"] == "near"


async def test_seed_request_exactly_as_written(
    settings: Settings, workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "rideflow.dispatcher")
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "4821", (12.9705, 77.5912))
        r = await c.post(
            "/request-ride", content=SEED_BODY, headers={"content-type": "application/json"}
        )
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["message"] == "Ride queued successfully"
        ride = await wait_for_status(c, body["ride_id"], {"OFFERED"})
        assert ride["rider_id"] == "1" and ride["driver"]["id"] == "4821"
        assert ride["pickup"] == {"lat": 12.97, "lng": 77.59}
        assert ride["dropoff"] == {"lat": 13.01, "lng": 77.60}

    async def logged() -> bool:
        return bool(re.search(r"Worker \d+ → Driver 4821 assigned", caplog.text))

    await eventually(logged, 10, "the assignment log line")


async def test_idempotency_key_returns_the_first_ride(settings: Settings) -> None:
    body = {
        "rider_id": "r9",
        "pickup": {"lat": BLR[0], "lng": BLR[1]},
        "dropoff": {"lat": 13.0, "lng": 77.6},
    }
    async with api_client(settings) as c:
        headers = {"Idempotency-Key": "k-1"}
        first = await c.post("/v1/rides", json=body, headers=headers)
        again = await c.post("/v1/rides", json=body, headers=headers)
        assert first.status_code == again.status_code == 202
        assert first.json()["ride_id"] == again.json()["ride_id"]
        other = await c.post(
            "/v1/rides", json={**body, "dropoff": {"lat": 13.1, "lng": 77.6}}, headers=headers
        )
        assert other.status_code == 409
        assert "different request" in other.json()["detail"]
        fresh = await c.post("/v1/rides", json=body, headers={"Idempotency-Key": "k-2"})
        assert fresh.json()["ride_id"] != first.json()["ride_id"]


async def test_a_ride_queued_past_its_deadline_is_not_matched(
    settings: Settings, workers: Workers, redis: Any
) -> None:
    settings = settings.model_copy(update={"ride_deadline_s": 0.2})
    async with api_client(settings) as c:
        await add_driver(c, "idle", BLR)
        ride_id = await request_ride(c, BLR)
        # No dispatcher runs yet: wait out the deadline, measured on Redis' clock.
        created = int(await redis.hget(f"rf:{{blr}}:order:{ride_id}", "deadline"))
        await eventually(lambda: redis_now_us(redis, created), 5, "the deadline to pass")
        workers.dispatcher(settings)
        ride = await wait_for_status(c, ride_id, {"OFFERED", "NO_DRIVER_FOUND"})
    assert ride["status"] == "NO_DRIVER_FOUND"
    assert "past its deadline" in ride["reason"]
    assert await redis.hget("rf:{blr}:driver:idle", "order") == ""


async def redis_now_us(redis: Any, beyond: int) -> bool:
    seconds, micros = await redis.time()
    return seconds * 1_000_000 + micros > beyond


async def test_poison_entries_go_to_the_dead_letter_stream(
    settings: Settings, workers: Workers, redis: Any
) -> None:
    settings = settings.model_copy(update={"claim_idle_ms": 200})
    dispatcher = workers.dispatcher(settings)
    stream = "rf:{blr}:requests"
    await redis.xadd(stream, {"junk": "1"})  # names no ride
    await redis.set("rf:{blr}:order:blr-broken", "not a hash")  # every script on it fails
    await redis.xadd(stream, {"ride": "blr-broken"})
    # An order whose dispatch keeps failing (its pickup cannot be searched from).
    orders = build_services(settings, redis).orders
    _, bad = await orders.enqueue(
        "blr", "ride", {"customer": "c", "pickup": "garbage", "dropoff": "1,1"}
    )
    dead = "rf:{blr}:requests:dead"
    await eventually(lambda: _has_entries(redis, dead, 3), 20, "three dead-lettered entries")
    entries = await redis.xrange(dead)
    assert {e[1]["order"] for e in entries} == {"", "blr-broken", bad}
    assert "WRONGTYPE" in next(e[1]["error"] for e in entries if e[1]["order"] == "blr-broken")
    # The failing order ends with the reason, instead of searching forever with nothing to move it.
    ended = await redis.hgetall(keys.order("blr", bad))
    assert ended["status"] == "NO_DRIVER_FOUND" and "dispatch failed" in ended["reason"]
    assert (await redis.xpending(stream, "dispatchers"))["pending"] == 0
    # The dispatcher is still at work.
    async with api_client(settings) as c:
        await add_driver(c, "ok", BLR)
        ride = await wait_for_status(c, await request_ride(c, BLR), {"OFFERED"})
    assert ride["driver"]["id"] == "ok" and dispatcher.alive()
    assert (await dispatcher.stop())["dead_lettered"] == 3


async def _has_entries(redis: Any, stream: str, n: int) -> bool:
    return bool(await redis.xlen(stream) >= n)


async def test_each_strategy_picks_what_it_promises(
    settings: Settings, workers: Workers, redis: Any
) -> None:
    workers.dispatcher(settings)
    async with api_client(settings) as c:

        async def place(driver: str, north_m: float, rating: float, speed: float | None) -> None:
            await add_driver(c, driver, offset(*BLR, north_m=north_m), rating=rating)
            if speed is not None:
                at = offset(*BLR, north_m=north_m)
                body = {"lat": at[0], "lng": at[1], "speed_mps": speed}
                assert (await c.put(f"/v1/drivers/{driver}/location", json=body)).status_code == 204

        # nearest: n1 (200 m); rating: r5 (4.9 at 700 m); eta: fast (900 m at 15 m/s = 60 s,
        # against n1's 200 m at 1.5 m/s = 133 s and others at the city's 20 km/h).
        await place("n1", 200, 4.0, 1.5)
        await place("r5", 700, 4.9, None)
        await place("fast", 900, 4.1, 15.0)

        async def ride_with(strategy: str | None) -> dict[str, Any]:
            body: dict[str, Any] = {
                "rider_id": f"r-{strategy}",
                "pickup": {"lat": BLR[0], "lng": BLR[1]},
                "dropoff": {"lat": 13.0, "lng": 77.6},
            }
            if strategy:
                body["strategy"] = strategy
            r = await c.post("/v1/rides", json=body)
            assert r.status_code == 202, r.text
            ride = await wait_for_status(c, r.json()["ride_id"], {"OFFERED"})
            await take(c, ride["ride_id"])
            await finish(c, ride["ride_id"])
            return ride

        assert (await ride_with("rating"))["driver"]["id"] == "r5"
        eta = await ride_with("eta")
        assert eta["driver"]["id"] == "fast" and eta["strategy"] == "eta"
        batch = await ride_with("batch")  # alone in its batch: the least pickup distance
        assert batch["driver"]["id"] == "n1" and batch["strategy"] == "batch"
        default = await ride_with(None)
        assert default["driver"]["id"] == "n1" and default["strategy"] == "nearest"
        r = await c.post(
            "/v1/rides",
            json={
                "rider_id": "x",
                "strategy": "cheapest",
                "pickup": {"lat": BLR[0], "lng": BLR[1]},
                "dropoff": {"lat": 13.0, "lng": 77.6},
            },
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "strategy"


async def test_a_batch_minimising_eta_picks_the_quickest_to_the_pickup(
    settings: Settings, workers: Workers
) -> None:
    settings = settings.model_copy(
        update={"batch_cost": "eta", "batch_window_s": 10.0, "batch_trigger_orders": 2}
    )
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        for driver, north_m, speed in (("slow", 200, 1.5), ("fast", 900, 15.0)):
            await add_driver(c, driver, offset(*BLR, north_m=north_m))
            at = offset(*BLR, north_m=north_m)
            body = {"lat": at[0], "lng": at[1], "speed_mps": speed}
            assert (await c.put(f"/v1/drivers/{driver}/location", json=body)).status_code == 204

        async def ride(rider: str, at: tuple[float, float]) -> str:
            r = await c.post(
                "/v1/rides",
                json={
                    "rider_id": rider,
                    "strategy": "batch",
                    "pickup": {"lat": at[0], "lng": at[1]},
                    "dropoff": {"lat": 13.0, "lng": 77.6},
                },
            )
            assert r.status_code == 202, r.text
            return str(r.json()["ride_id"])

        a, b = await ride("r-a", BLR), await ride("r-b", offset(*BLR, north_m=2000))
        got_a = await wait_for_status(c, a, {"OFFERED"})
        got_b = await wait_for_status(c, b, {"OFFERED"})
        # ETAs: a-slow 133 s + b-fast 73 s beats a-fast 60 s + b-slow 1,200 s.
        assert (got_a["driver"]["id"], got_b["driver"]["id"]) == ("slow", "fast")
        # Each order's own distance to its driver, though both were near the same drivers.
        assert 190 < got_a["pickup_distance_m"] < 210
        assert 1090 < got_b["pickup_distance_m"] < 1110
