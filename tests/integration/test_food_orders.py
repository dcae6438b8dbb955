"""Food orders: priced from the menu, limited stock reserved with the delivery in one Lua step,
recorded in SQL by a job (both databases), stock back exactly once on cancel or no driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from rideflow.config import Settings
from rideflow.jobs.registry import JobContext
from rideflow.record.db import Record
from rideflow.record.models import FoodOrder, FoodOrderLine
from rideflow.redis import keys
from rideflow.restaurants.tasks import RecordFoodOrder, record_food_order
from rideflow.workers.stock import StockReleaser
from tests.conftest import BLR, Workers, offset, settings_for
from tests.fleet import wait_for_status
from tests.food import app_with_state, new_item, new_restaurant
from tests.servers import RedisServer, eventually

pytestmark = pytest.mark.timeout(120)
DROP = offset(*BLR, north_m=2500)


def order(rid: str, customer: str, *lines: tuple[str, int]) -> dict[str, Any]:
    return {
        "restaurant_id": rid,
        "customer_id": customer,
        "items": [{"item_id": i, "qty": q} for i, q in lines],
        "dropoff": {"lat": DROP[0], "lng": DROP[1]},
    }


@pytest.fixture
def food_settings(flushed: RedisServer, record_url: str) -> Settings:
    return settings_for(flushed.url, database_url=record_url, delivery_deadline_s=1.0)


@pytest.fixture
async def app(food_settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with app_with_state(food_settings) as pair:
        yield pair


@pytest.fixture
async def releaser(food_settings: Settings) -> AsyncIterator[StockReleaser]:
    worker = StockReleaser(food_settings, ["blr"])
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield worker
    stop.set()
    await asyncio.wait_for(task, 30)


async def left(redis: Redis, item_id: str) -> int:
    return int(await redis.get(keys.stock("blr", item_id)) or -1)


async def test_an_order_is_priced_from_the_menu_and_recorded_by_a_job(
    app: Any, workers: Workers, food_settings: Settings, redis: Redis
) -> None:
    c, state = app
    rid = await new_restaurant(c)
    biryani = await new_item(c, rid, price_minor=32000)
    rice = await new_item(c, rid, name="Ghee Rice", price_minor=15050)
    r = await c.post("/v1/food-orders", json=order(rid, "c1", (biryani["id"], 2), (rice["id"], 1)))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "QUEUED" and body["city"] == "blr" and body["currency"] == "INR"
    assert [(x["item_id"], x["qty"], x["unit_price_minor"]) for x in body["lines"]] == [
        (biryani["id"], 2, 32000),
        (rice["id"], 1, 15050),
    ]
    assert body["total_minor"] == 2 * 32000 + 15050
    order_id = body["order_id"]
    # The order is its delivery: picked up at the restaurant, dropped at the customer's.
    delivery = (await c.get(f"/v1/deliveries/{order_id}")).json()
    assert delivery["restaurant_id"] == rid and delivery["customer_id"] == "c1"
    restaurant = (await c.get(f"/v1/restaurants/{rid}")).json()
    assert delivery["pickup"] == restaurant["location"]
    assert delivery["dropoff"] == {"lat": DROP[0], "lng": DROP[1]}
    view = (await c.get(f"/v1/food-orders/{order_id}")).json()
    assert view["status"] == "QUEUED" and view["total_minor"] == body["total_minor"]
    assert view["lines"] == body["lines"] and view["stock_released"] is False

    # Queue -> worker -> database.
    record: Record = state["record"]
    jobs = workers.jobs(food_settings)

    async def recorded() -> bool:
        async with record.session() as s:
            return await s.get(FoodOrder, order_id) is not None

    await eventually(recorded, 20, "the food order in SQL")
    await jobs.stop()
    async with record.session() as s:
        row = await s.get(FoodOrder, order_id)
        lines = (await s.scalars(select(FoodOrderLine).order_by(FoodOrderLine.name))).all()
    assert row is not None and row.total_minor == body["total_minor"]
    assert row.restaurant_id == rid and row.customer_id == "c1" and row.city == "blr"
    assert [(x.name, x.qty, x.unit_price_minor) for x in lines] == [
        ("Chicken Biryani", 2, 32000),
        ("Ghee Rice", 1, 15050),
    ]
    # A replayed job inserts nothing twice.
    ctx = JobContext("replay", 2, redis, state["menus"].scripts, food_settings, _log(), record)
    again = await record_food_order(RecordFoodOrder(order_id=order_id), ctx)
    assert again["recorded"] is False
    async with record.session() as s:
        assert await s.scalar(select(func.count()).select_from(FoodOrderLine)) == 2
        assert await s.scalar(select(func.count()).select_from(FoodOrder)) == 1
    # Once Redis' copy is gone, the order is read from the record.
    await redis.delete(keys.order("blr", order_id))
    recorded_view = (await c.get(f"/v1/food-orders/{order_id}")).json()
    by_item = sorted(body["lines"], key=lambda x: x["item_id"])
    assert recorded_view["lines"] == by_item  # the record keeps them by item id
    assert recorded_view["total_minor"] == body["total_minor"]
    assert recorded_view["status"] == "QUEUED" and recorded_view["customer_id"] == "c1"


def _log() -> Any:
    import logging

    return logging.getLogger("test")


async def test_bad_orders_are_422_naming_the_item(app: Any) -> None:
    c, _ = app
    rid = await new_restaurant(c)
    item = await new_item(c, rid)
    off = await new_item(c, rid, name="Off", available=False)
    dollars = await new_item(c, rid, name="Burger", currency="USD", price_minor=500)
    cases: list[tuple[dict[str, Any], str, str]] = [
        (order(rid, "c1", (item["id"], 1), ("itm-nothere", 1)), "items.1.item_id", "itm-nothere"),
        (order(rid, "c1", (off["id"], 1)), "items.0.item_id", "not available"),
        (order(rid, "c1", (item["id"], 1), (item["id"], 2)), "items.1.item_id", "twice"),
        (order(rid, "c1", (item["id"], 1), (dollars["id"], 1)), "items", "currencies"),
        (order("blr-nothere", "c1", (item["id"], 1)), "restaurant_id", "no restaurant"),
        (order(rid, "c1", (item["id"], 0)), "items.0.qty", ""),
        (order(rid, "c1"), "items", ""),
        ({**order(rid, "c1", (item["id"], 1)), "price_minor": 1}, "price_minor", ""),
        (
            {**order(rid, "c1", (item["id"], 1)), "dropoff": {"lat": 95, "lng": 0}},
            "dropoff.lat",
            "",
        ),
    ]
    for body, field, words in cases:
        r = await c.post("/v1/food-orders", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in r.json()["errors"]], (field, r.text)
        assert words in r.json()["detail"], r.text
    await c.patch(f"/v1/restaurants/{rid}", json={"open": False})
    r = await c.post("/v1/food-orders", json=order(rid, "c1", (item["id"], 1)))
    assert r.status_code == 409 and "closed" in r.json()["detail"]
    assert (await c.get("/v1/food-orders/blr-nothere")).status_code == 404


async def test_idempotency_key_returns_the_first_order_and_reserves_once(
    app: Any, redis: Redis
) -> None:
    c, _ = app
    rid = await new_restaurant(c)
    item = await new_item(c, rid, stock=5, per_customer_limit=3)
    body = order(rid, "c1", (item["id"], 2))
    first = await c.post("/v1/food-orders", json=body, headers={"Idempotency-Key": "k1"})
    again = await c.post("/v1/food-orders", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert await left(redis, item["id"]) == 3
    other = await c.post(
        "/v1/food-orders", json=order(rid, "c1", (item["id"], 1)), headers={"Idempotency-Key": "k1"}
    )
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    assert await left(redis, item["id"]) == 3


async def test_limits_sold_out_and_all_or_none(app: Any, redis: Redis) -> None:
    c, _ = app
    rid = await new_restaurant(c)
    sale = await new_item(c, rid, stock=2, per_customer_limit=1)
    side = await new_item(c, rid, name="Raita", stock=10, per_customer_limit=5)
    assert await left(redis, sale["id"]) == 2  # seeded from the configured stock
    assert (
        await c.post("/v1/food-orders", json=order(rid, "a", (sale["id"], 1)))
    ).status_code == 202
    r = await c.post("/v1/food-orders", json=order(rid, "a", (sale["id"], 1)))
    assert r.status_code == 409 and "at most 1" in r.json()["detail"]
    r = await c.post("/v1/food-orders", json=order(rid, "b", (sale["id"], 2)))
    assert r.status_code == 409 and "at most 1" in r.json()["detail"]
    assert (
        await c.post("/v1/food-orders", json=order(rid, "b", (sale["id"], 1)))
    ).status_code == 202
    # Sold out: the whole order is refused, and the other item's stock is untouched.
    r = await c.post("/v1/food-orders", json=order(rid, "c", (side["id"], 3), (sale["id"], 1)))
    assert r.status_code == 409 and "sold out" in r.json()["detail"]
    assert await left(redis, sale["id"]) == 0 and await left(redis, side["id"]) == 10
    assert await redis.hget(keys.stock_buyers("blr", side["id"]), "c") is None
    # A restock through the menu restarts the live count from the new configured stock.
    r = await c.patch(f"/v1/restaurants/{rid}/menu/{sale['id']}", json={"stock": 1})
    assert r.status_code == 200 and await left(redis, sale["id"]) == 1
    assert (
        await c.post("/v1/food-orders", json=order(rid, "c", (sale["id"], 1)))
    ).status_code == 202


async def test_stock_returns_once_on_cancel(
    app: Any, redis: Redis, releaser: StockReleaser
) -> None:
    c, state = app
    rid = await new_restaurant(c)
    sale = await new_item(c, rid, stock=1, per_customer_limit=1)
    r = await c.post("/v1/food-orders", json=order(rid, "a", (sale["id"], 1)))
    order_id = r.json()["order_id"]
    assert (
        await c.post("/v1/food-orders", json=order(rid, "b", (sale["id"], 1)))
    ).status_code == 409
    assert (await c.post(f"/v1/deliveries/{order_id}/cancel")).status_code == 200

    async def released() -> bool:
        return bool((await c.get(f"/v1/food-orders/{order_id}")).json()["stock_released"])

    await eventually(released, 10, "the stock released")
    assert await left(redis, sale["id"]) == 1
    assert await redis.zcard(keys.restaurant_orders("blr", rid)) == 0  # no longer open
    assert releaser.counts["released"] == 1 and releaser.counts["units"] == 1
    # Again (a replayed event, a second releaser): nothing more comes back.
    stock = state["restaurants"].stock
    assert (await stock.release("blr", order_id)).outcome.value == "NONE"
    await redis.xadd(keys.city_events("blr"), {"order": order_id, "status": "CANCELLED"})

    async def seen_replay() -> bool:
        pending = await redis.xpending(keys.city_events("blr"), keys.STOCK_GROUP)
        info = await redis.xinfo_groups(keys.city_events("blr"))
        last = next(g for g in info if g["name"] == keys.STOCK_GROUP)["last-delivered-id"]
        newest = (await redis.xrevrange(keys.city_events("blr"), count=1))[0][0]
        return pending["pending"] == 0 and last == newest

    await eventually(seen_replay, 10, "the replayed event handled")
    assert await left(redis, sale["id"]) == 1 and releaser.counts["released"] == 1
    # The customer whose order was cancelled may buy again; b (refused before) now can.
    assert (
        await c.post("/v1/food-orders", json=order(rid, "b", (sale["id"], 1)))
    ).status_code == 202


async def test_stock_returns_when_no_driver_is_found(
    app: Any, redis: Redis, releaser: StockReleaser, workers: Workers, food_settings: Settings
) -> None:
    c, _ = app
    rid = await new_restaurant(c)
    sale = await new_item(c, rid, stock=3, per_customer_limit=2)
    r = await c.post("/v1/food-orders", json=order(rid, "a", (sale["id"], 2)))
    order_id = r.json()["order_id"]
    assert await left(redis, sale["id"]) == 1
    workers.dispatcher(food_settings)  # no drivers: the order ends NO_DRIVER_FOUND
    await wait_for_status(c, order_id, {"NO_DRIVER_FOUND"}, within=20, kind="deliveries")

    async def back() -> bool:
        return await left(redis, sale["id"]) == 3

    await eventually(back, 10, "the stock back")
    view = (await c.get(f"/v1/food-orders/{order_id}")).json()
    assert view["status"] == "NO_DRIVER_FOUND" and view["stock_released"] is True
    assert releaser.counts["units"] == 2
