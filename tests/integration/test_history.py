"""Reads from the record: one order once Redis no longer has it (same shape as from Redis), and
pages of history, newest first, keyset-paginated; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.redis import keys
from tests.conftest import api_client, settings_for
from tests.integration.record_rows import (
    Driver,
    Offer,
    Order,
    driver_row,
    insert_rows,
    order_row,
)

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
RIDE = {
    "rider_id": "rider-9",
    "pickup": {"lat": 12.9716, "lng": 77.5946},
    "dropoff": {"lat": 13.01, "lng": 77.6},
}


@pytest.fixture
def record_settings(record_url: str, settings: Settings) -> Settings:
    return settings_for(settings.redis_url, database_url=record_url)


@pytest.fixture
async def api(record_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(record_settings) as c:
        yield c


def us_of(text: str) -> int:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(at.timestamp()) * 1_000_000 + at.microsecond


async def test_a_ride_redis_forgot_is_read_from_the_record_in_the_same_shape(
    api: httpx.AsyncClient, redis: Redis, record_url: str
) -> None:
    created = await api.post("/v1/rides", json=RIDE)
    ride_id = created.json()["ride_id"]
    from_redis = (await api.get(f"/v1/rides/{ride_id}")).json()
    queued = us_of(from_redis["transitions"]["QUEUED"])
    await insert_rows(
        record_url,
        Order,
        [order_row(ride_id, queued, customer_id="rider-9", dropoff_lat=13.01, dropoff_lng=77.6)],
    )
    assert await redis.delete(keys.order("blr", ride_id)) == 1

    from_record = await api.get(f"/v1/rides/{ride_id}")
    assert from_record.status_code == 200, from_record.text
    assert from_record.json() == from_redis
    # asked as a delivery it is still unknown, and an id neither has is a 404 problem
    wrong_kind = await api.get(f"/v1/deliveries/{ride_id}")
    assert wrong_kind.status_code == 404
    missing = await api.get("/v1/rides/blr-neverseen")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_a_finished_delivery_from_the_record_has_its_driver_and_every_transition(
    api: httpx.AsyncClient, record_url: str
) -> None:
    await insert_rows(record_url, Driver, [driver_row("D4", 12.97, 77.59, name="Rohit")])
    await insert_rows(
        record_url,
        Order,
        [
            order_row(
                "blr-old-delivery",
                T0,
                kind="delivery",
                customer_id="cust-7",
                driver_id="D4",
                status="DELIVERED",
                outcome="DELIVERED",
                ext_order="ORD_1",
                restaurant_id="RST_1",
                pickup_m=125.5,
                offers=2,
                searching_us=T0 + 1_000,
                offered_us=T0 + 2_000,
                accepted_us=T0 + 3_000,
                arriving_us=T0 + 4_000,
                picked_up_us=T0 + 5_000,
                finished_us=T0 + 6_000,
                extra={"attempts": 1},
            ),
            order_row(
                "blr-old-offered",
                T0,
                kind="delivery",
                customer_id="cust-7",
                driver_id="D5",
                status="OFFERED",
                offers=1,
                offered_us=T0 + 2_000,
            ),
        ],
    )
    await insert_rows(
        record_url,
        Offer,
        [
            {
                "id": "blr-old-offered-o1",
                "city": "blr",
                "order_id": "blr-old-offered",
                "driver_id": "D5",
                "pickup_m": 300.0,
                "offered_us": T0 + 2_000,
                "answered_us": None,
                "outcome": None,
            }
        ],
    )
    body = (await api.get("/v1/deliveries/blr-old-delivery")).json()
    assert body["delivery_id"] == "blr-old-delivery"
    assert body["customer_id"] == "cust-7"
    assert (body["order_id"], body["restaurant_id"]) == ("ORD_1", "RST_1")
    assert body["status"] == "DELIVERED"
    assert body["driver"] == {"id": "D4", "name": "Rohit", "rating": 4.5, "vehicle": "Bike"}
    assert (body["pickup_distance_m"], body["offers"], body["attempts"]) == (125.5, 2, 1)
    assert body["offer_id"] is None
    assert body["transitions"] == {
        "QUEUED": "2023-11-14T22:13:20Z",
        "SEARCHING": "2023-11-14T22:13:20.001000Z",
        "OFFERED": "2023-11-14T22:13:20.002000Z",
        "ACCEPTED": "2023-11-14T22:13:20.003000Z",
        "DRIVER_ARRIVING": "2023-11-14T22:13:20.004000Z",
        "PICKED_UP": "2023-11-14T22:13:20.005000Z",
        "DELIVERED": "2023-11-14T22:13:20.006000Z",
    }
    offered = (await api.get("/v1/deliveries/blr-old-offered")).json()
    assert offered["offer_id"] == "blr-old-offered-o1"
    # a driver the record has no profile of is still named
    assert offered["driver"] == {"id": "D5", "name": "", "rating": 0.0, "vehicle": ""}


async def test_history_pages_newest_first_by_keyset_with_filters(
    api: httpx.AsyncClient, record_url: str
) -> None:
    rows = [
        # three share a creation time: their order is by id, descending
        order_row(f"blr-r{i}", T0 + (i // 3) * 1_000_000, customer_id="c1")
        for i in range(8)
    ]
    rows += [
        order_row("blr-x1", T0 + 500, customer_id="c2", status="COMPLETED"),
        order_row("blr-x2", T0 + 600, customer_id="c1", status="CANCELLED"),
        order_row("blr-d1", T0 + 700, customer_id="c1", kind="delivery"),
    ]
    await insert_rows(record_url, Order, rows)
    expected = sorted(
        [r for r in rows if r["kind"] == "ride" and r["customer_id"] == "c1"],
        key=lambda r: (r["created_us"], r["id"]),
        reverse=True,
    )
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"customer_id": "c1", "limit": "3", **({"cursor": cursor} if cursor else {})}
        reply = await api.get("/v1/rides", params=params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert len(body["rides"]) <= 3
        seen += [r["ride_id"] for r in body["rides"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in expected]
    assert pages == 3

    def ids(reply: httpx.Response, field: str = "rides") -> list[str]:
        assert reply.status_code == 200, reply.text
        return [r["ride_id" if field == "rides" else "delivery_id"] for r in reply.json()[field]]

    assert ids(await api.get("/v1/rides", params={"status": "CANCELLED"})) == ["blr-x2"]
    window = {"from": "2023-11-14T22:13:21Z", "to": "2023-11-14T22:13:22"}  # naive: UTC
    assert ids(await api.get("/v1/rides", params=window)) == ["blr-r5", "blr-r4", "blr-r3"]
    deliveries = await api.get("/v1/deliveries", params={"customer_id": "c1"})
    assert ids(deliveries, "deliveries") == ["blr-d1"]
    assert deliveries.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "from"),
        ({"status": "LOST"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WzEsImEiLCJiIl0"}, "cursor"),  # [1,"a","b"]: valid base64 and JSON
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"from": "yesterday"}, "from"),
        ({"from": "0001-01-01T00:00:00+23:59"}, "from"),
        ({"to": "1969-12-31T23:59:59Z"}, "to"),
        ({"customer_id": "a b"}, "customer_id"),
    ],
)
async def test_bad_history_parameters_are_422_naming_them(
    api: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    for path in ("/v1/rides", "/v1/deliveries"):
        reply = await api.get(path, params=params)
        assert reply.status_code == 422, reply.text
        assert reply.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in reply.json()["errors"]] == [field]


async def test_the_record_down_is_503_not_404(redis: Redis, settings: Settings) -> None:
    down = settings_for(
        settings.redis_url,
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none",
        database_auto_migrate=False,
    )
    async with api_client(down) as c:
        reply = await c.get("/v1/rides/blr-gone")
        assert reply.status_code == 503, reply.text
        assert reply.headers["content-type"] == "application/problem+json"
        assert (await c.get("/v1/rides")).status_code == 503


def test_datetimes_in_answers_are_utc() -> None:
    assert datetime.fromtimestamp(T0 / 1e6, tz=UTC).isoformat() == "2023-11-14T22:13:20+00:00"
