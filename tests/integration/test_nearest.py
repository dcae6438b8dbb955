"""`GET /v1/admin/drivers/nearest`: the k drivers whose last recorded position is nearest, the
same drivers on SQLite and PostgreSQL (checked against a brute-force haversine ranking), and on
PostgreSQL a KNN walk of the GiST index."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from rideflow.config import Settings
from rideflow.record import db, nearest
from tests.conftest import BLR, api_client, offset, settings_for
from tests.integration.record_rows import Driver, driver_row, insert_rows
from tests.record import record_database

SEED = 20_240_611


def fleet(count: int, side_m: float, rng: random.Random) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(count):
        lat, lng = offset(*BLR, rng.uniform(-side_m, side_m) / 2, rng.uniform(-side_m, side_m) / 2)
        rows.append(driver_row(f"D{i:05d}", lat, lng, city="blr" if i % 5 else "mys"))
    return rows


def brute_force(
    rows: list[dict[str, object]], lat: float, lng: float, k: int, city: str | None = None
) -> list[tuple[str, str]]:
    ranked = sorted(
        (
            nearest.haversine_m(lat, lng, float(r["lat"]), float(r["lng"])),  # type: ignore[arg-type]
            str(r["city"]),
            str(r["id"]),
        )
        for r in rows
        if r["lat"] is not None and (city is None or r["city"] == city)
    )
    return [(c, i) for _, c, i in ranked[:k]]


@pytest.fixture
async def api(record_url: str, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings_for(settings.redis_url, database_url=record_url)) as c:
        yield c


async def test_the_same_nearest_drivers_on_both_databases(
    record_url: str, api: httpx.AsyncClient
) -> None:
    rng = random.Random(SEED)
    rows = fleet(600, 12_000, rng)
    # a driver the record has no position for, and two at the same place (ties go by id)
    rows.append(driver_row("Dnone", None, None))
    rows += [driver_row(f"Dtwin{i}", *offset(*BLR, 3000, 3000)) for i in (2, 1)]
    rows += [driver_row(f"O{i}", *offset(*BLR, 100 * i, 0), city="ooty") for i in range(3)]
    await insert_rows(record_url, Driver, rows)
    probes = [BLR, offset(*BLR, 3000, 3000), offset(*BLR, -5500, 5900), offset(*BLR, 40_000, 0)]
    for lat, lng in probes:
        for k, city in ((1, None), (10, None), (25, "blr"), (10, "mys")):
            params: dict[str, str | float | int] = {"lat": lat, "lng": lng, "k": k}
            if city:
                params["city"] = city
            reply = await api.get("/v1/admin/drivers/nearest", params=params)
            assert reply.status_code == 200, reply.text
            drivers = reply.json()["drivers"]
            assert [(d["city"], d["id"]) for d in drivers] == brute_force(rows, lat, lng, k, city)
            distances = [d["distance_m"] for d in drivers]
            assert distances == sorted(distances)
    twins = await api.get(
        "/v1/admin/drivers/nearest",
        params={"lat": offset(*BLR, 3000, 3000)[0], "lng": offset(*BLR, 3000, 3000)[1], "k": 2},
    )
    assert [d["id"] for d in twins.json()["drivers"]] == ["Dtwin1", "Dtwin2"]
    assert twins.json()["drivers"][0]["distance_m"] == 0.0
    # from the other side of the Earth (the box widens all the way)
    far = await api.get(
        "/v1/admin/drivers/nearest", params={"lat": -12, "lng": -100, "k": 100, "city": "mys"}
    )
    assert [(d["city"], d["id"]) for d in far.json()["drivers"]] == brute_force(
        rows, -12, -100, 100, "mys"
    )
    # more asked than recorded: all of them
    everyone = await api.get(
        "/v1/admin/drivers/nearest", params={"lat": 0, "lng": 0, "k": 10, "city": "ooty"}
    )
    assert [d["id"] for d in everyone.json()["drivers"]] == ["O0", "O1", "O2"]  # south first


async def test_distances_are_great_circle_metres(record_url: str, api: httpx.AsyncClient) -> None:
    await insert_rows(record_url, Driver, [driver_row("D1", *offset(*BLR, 1000, 0))])
    reply = await api.get("/v1/admin/drivers/nearest", params={"lat": BLR[0], "lng": BLR[1]})
    (driver,) = reply.json()["drivers"]
    assert driver["distance_m"] == pytest.approx(1000, rel=2e-3)
    assert driver["seen_at"] == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lat": 91, "lng": 0}, "lat"),
        ({"lng": 0}, "lat"),
        ({"lat": 0, "lng": 181}, "lng"),
        ({"lat": 0, "lng": 0, "k": 0}, "k"),
        ({"lat": 0, "lng": 0, "k": 101}, "k"),
        ({"lat": 0, "lng": 0, "city": "b l r"}, "city"),
    ],
)
async def test_bad_nearest_parameters_are_422_naming_them(
    api: httpx.AsyncClient, params: dict[str, object], field: str
) -> None:
    reply = await api.get("/v1/admin/drivers/nearest", params=params)  # type: ignore[arg-type]
    assert reply.status_code == 422, reply.text
    assert [e["field"] for e in reply.json()["errors"]] == [field]


def test_the_box_holds_the_circle() -> None:
    rng = random.Random(SEED)
    for _ in range(2000):
        lat, lng = rng.uniform(-80, 80), rng.uniform(-170, 170)
        radius = rng.uniform(10, 200_000)
        bounds = nearest.box(lat, lng, radius)
        bearing = rng.uniform(0, 2 * math.pi)
        north, east = radius * math.cos(bearing), radius * math.sin(bearing)
        plat, plng = offset(lat, lng, north, east)
        if nearest.haversine_m(lat, lng, plat, plng) <= radius:
            assert bounds["south"] <= plat <= bounds["north"]
            assert bounds["west"] <= plng <= bounds["east"]


async def test_postgis_walks_the_gist_index(tmp_path: object) -> None:
    async with record_database("postgresql", tmp_path) as url:  # type: ignore[arg-type]
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "INSERT INTO drivers (city, id, lat, lng, updated_us) "
                "SELECT 'blr', 'D' || g, 12.84 + random() * 0.27, 77.46 + random() * 0.28, 0 "
                "FROM generate_series(1, 20000) AS g"
            )
            await conn.execute("ANALYZE drivers")
        finally:
            await conn.close()
        engine = db.create_engine(url)
        try:
            async with engine.connect() as c:
                plan = "\n".join(
                    (
                        await c.execute(
                            text("EXPLAIN " + nearest.KNN_SQL),
                            {"lat": BLR[0], "lng": BLR[1], "k": 10, "city": None},
                        )
                    ).scalars()
                )
        finally:
            await engine.dispose()
        assert "Index Scan using ix_drivers_geom on drivers" in plan, plan
        assert "Order By: (geom <->" in plan, plan
