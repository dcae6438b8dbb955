"""Driver registration, status and positions through the API (in-process, real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis

from rideflow.api.app import create_app
from rideflow.config import City, Settings
from rideflow.redis import keys
from tests.auth import admin
from tests.conftest import BLR, offset
from tests.fleet import add_driver

DEL = (28.6139, 77.2090)


@pytest.fixture
async def two_cities(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    cities = [
        *settings.cities,
        City(code="del", name="Delhi", lat=DEL[0], lng=DEL[1], radius_km=30),
    ]
    app = create_app(settings.model_copy(update={"cities": cities}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://rf", headers=admin(settings)
        ) as c:
            yield c


async def test_driver_lifecycle_and_pool(client: httpx.AsyncClient, redis: Redis) -> None:
    r = await client.post(
        "/v1/drivers",
        json={"id": "D4", "name": "Rohit Sharma", "rating": 4.8, "vehicle": "Bike · KA01HX2847"},
    )
    assert r.status_code == 201
    assert r.json() | {"position": None} == {
        "id": "D4",
        "name": "Rohit Sharma",
        "rating": 4.8,
        "vehicle": "Bike · KA01HX2847",
        "city": "blr",
        "status": "offline",
        "order_id": None,
        "offer_id": None,
        "position": None,
        "speed_mps": None,
    }
    pool = keys.pool("blr")
    await client.put(
        "/v1/drivers/D4/location", json={"lat": BLR[0], "lng": BLR[1], "speed_mps": 8.5}
    )
    assert await redis.zscore(pool, "D4") is None, "offline drivers are not in the pool"
    await client.put("/v1/drivers/D4/status", json={"status": "online"})
    assert await redis.zscore(pool, "D4") is not None
    view = (await client.get("/v1/drivers/D4")).json()
    assert view["status"] == "online" and view["speed_mps"] == 8.5
    assert view["position"]["lat"] == BLR[0]
    await client.put("/v1/drivers/D4/status", json={"status": "offline"})
    assert await redis.zscore(pool, "D4") is None


async def test_stale_position_keeps_a_driver_out_of_the_pool(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    assert (await client.post("/v1/drivers", json={"id": "old", "name": "A"})).status_code == 201
    old = datetime.now(UTC) - timedelta(seconds=120)
    body = {"lat": BLR[0], "lng": BLR[1], "recorded_at": old.isoformat()}
    assert (await client.put("/v1/drivers/old/location", json=body)).status_code == 422
    await client.put("/v1/drivers/old/status", json={"status": "online"})
    assert await redis.zscore(keys.pool("blr"), "old") is None
    await client.put("/v1/drivers/old/location", json={"lat": BLR[0], "lng": BLR[1]})
    assert await redis.zscore(keys.pool("blr"), "old") is not None


async def test_late_position_never_moves_a_driver_back(client: httpx.AsyncClient) -> None:
    await add_driver(client, "d1", BLR)
    earlier = datetime.now(UTC) - timedelta(seconds=5)
    here = offset(*BLR, north_m=500)
    r = await client.put(
        "/v1/drivers/d1/location",
        json={"lat": here[0], "lng": here[1], "recorded_at": earlier.isoformat()},
    )
    assert r.status_code == 422 and "older than" in r.json()["detail"]
    assert (await client.get("/v1/drivers/d1")).json()["position"]["lat"] == BLR[0]


async def test_batch_reports_each_refused_position(two_cities: httpx.AsyncClient) -> None:
    c = two_cities
    await add_driver(c, "b1", BLR)
    await add_driver(c, "b2", BLR)
    r = await c.post("/v1/drivers", json={"id": "d9", "name": "Delhi driver", "city": "del"})
    assert r.status_code == 201
    moved = offset(*BLR, east_m=300)
    r = await c.post(
        "/v1/drivers/locations",
        json={
            "positions": [
                {"driver_id": "b1", "lat": moved[0], "lng": moved[1]},
                {"driver_id": "ghost", "lat": BLR[0], "lng": BLR[1]},
                {"driver_id": "b2", "lat": 40.0, "lng": -74.0},
                {"driver_id": "d9", "lat": BLR[0], "lng": BLR[1]},
                {"driver_id": "d9", "lat": DEL[0], "lng": DEL[1]},
            ]
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    reasons = {x["index"]: x["reason"] for x in body["rejected"]}
    assert set(reasons) == {1, 2, 3}
    assert "no driver" in reasons[1]
    assert "outside every service area" in reasons[2]
    assert "drives in del" in reasons[3]
    assert (await c.get("/v1/drivers/b1")).json()["position"]["lng"] == pytest.approx(moved[1])
    assert (await c.get("/v1/drivers/d9")).json()["position"]["lat"] == DEL[0]


async def test_batch_validation_is_all_or_nothing(client: httpx.AsyncClient, redis: Redis) -> None:
    await add_driver(client, "v1", BLR)
    before = await redis.hgetall(keys.driver("blr", "v1"))
    r = await client.post(
        "/v1/drivers/locations",
        json={
            "positions": [
                {"driver_id": "v1", "lat": 12.98, "lng": 77.6},
                {"driver_id": "v1", "lat": 95, "lng": 77.6},
            ]
        },
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "positions.1.lat"
    assert await redis.hgetall(keys.driver("blr", "v1")) == before
    r = await client.post("/v1/drivers/locations", json={"positions": []})
    assert r.status_code == 422


async def test_single_position_in_another_city_is_422_on_lat(two_cities: httpx.AsyncClient) -> None:
    await add_driver(two_cities, "b7", BLR)
    r = await two_cities.put("/v1/drivers/b7/location", json={"lat": DEL[0], "lng": DEL[1]})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "lat", "reason": r.json()["detail"]}]
    assert "drives in blr" in r.json()["detail"]
