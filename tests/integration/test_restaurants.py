"""Restaurants and menus on both record databases: CRUD, validation, 404s, the 409 for deleting
a restaurant with open food orders, and the menu cache (hit and miss, ETag and 304, versioned
invalidation against a racing reader, single flight of 1,000 cold reads)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from rideflow.restaurants.cache import MenuCache
from rideflow.restaurants.store import load_menu
from tests.conftest import BLR, offset, settings_for
from tests.food import app_with_state, menu_queries, new_item, new_restaurant
from tests.servers import RedisServer, eventually

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def app(flushed: RedisServer, record_url: str) -> Any:
    settings = settings_for(flushed.url, database_url=record_url)
    async with app_with_state(settings) as (c, state):
        yield c, state


def fields(r: httpx.Response) -> list[str]:
    assert r.headers["content-type"] == "application/problem+json", r.text
    return [e["field"] for e in r.json()["errors"]]


async def test_restaurant_crud_and_paging(app: Any) -> None:
    c, _ = app
    ids = [await new_restaurant(c, f"R{i}") for i in range(3)]
    one = (await c.get(f"/v1/restaurants/{ids[0]}")).json()
    assert one["name"] == "R0" and one["city"] == "blr" and one["open"] is True
    assert one["id"].startswith("blr-")

    first = (await c.get("/v1/restaurants", params={"city": "blr", "limit": 2})).json()
    assert len(first["restaurants"]) == 2 and first["next_after"]
    rest = (
        await c.get("/v1/restaurants", params={"city": "blr", "after": first["next_after"]})
    ).json()
    assert rest["next_after"] is None
    listed = [r["id"] for r in first["restaurants"] + rest["restaurants"]]
    assert sorted(listed) == sorted(ids)

    r = await c.patch(f"/v1/restaurants/{ids[0]}", json={"name": "Renamed", "open": False})
    assert r.status_code == 200 and r.json()["name"] == "Renamed" and r.json()["open"] is False
    assert (await c.get(f"/v1/restaurants/{ids[0]}")).json()["name"] == "Renamed"

    assert (await c.delete(f"/v1/restaurants/{ids[0]}")).status_code == 204
    assert (await c.get(f"/v1/restaurants/{ids[0]}")).status_code == 404
    assert (await c.delete(f"/v1/restaurants/{ids[0]}")).status_code == 404


async def test_menu_items_crud(app: Any) -> None:
    c, _ = app
    rid = await new_restaurant(c)
    a = await new_item(c, rid, description="Andhra style", stock=10, per_customer_limit=2)
    b = await new_item(c, rid, name="Ghee Rice", price_minor=15000)
    menu = (await c.get(f"/v1/restaurants/{rid}/menu")).json()
    assert [i["id"] for i in menu["items"]] == [a["id"], b["id"]]
    assert menu["items"][0]["stock"] == 10 and menu["items"][0]["per_customer_limit"] == 2
    assert menu["items"][1]["stock"] is None

    r = await c.patch(f"/v1/restaurants/{rid}/menu/{b['id']}", json={"available": False})
    assert r.status_code == 200 and r.json()["available"] is False
    r = await c.patch(f"/v1/restaurants/{rid}/menu/{a['id']}", json={"stock": None})
    assert r.json()["stock"] is None
    assert (await c.delete(f"/v1/restaurants/{rid}/menu/{a['id']}")).status_code == 204
    menu = (await c.get(f"/v1/restaurants/{rid}/menu")).json()
    assert [(i["id"], i["available"]) for i in menu["items"]] == [(b["id"], False)]


async def test_bad_input_is_422_naming_the_field(app: Any) -> None:
    c, _ = app
    r = await c.post("/v1/restaurants", json={"name": "Far", "location": {"lat": 0, "lng": 0}})
    assert r.status_code == 422 and fields(r) == ["location"]
    assert "outside every service area" in r.json()["detail"]
    r = await c.post("/v1/restaurants", json={"name": "", "location": {"lat": BLR[0], "lng": 77}})
    assert r.status_code == 422 and "name" in fields(r)
    r = await c.post("/v1/restaurants", json={"name": "X", "location": {"lat": 91, "lng": 0}})
    assert r.status_code == 422 and fields(r) == ["location.lat"]
    r = await c.get("/v1/restaurants", params={"city": "nowhere"})
    assert r.status_code == 422 and fields(r) == ["city"]

    rid = await new_restaurant(c)
    far = {"lat": 28.61, "lng": 77.20}  # Delhi: no configured city
    r = await c.patch(f"/v1/restaurants/{rid}", json={"location": far})
    assert r.status_code == 422 and fields(r) == ["location"]
    r = await c.patch(f"/v1/restaurants/{rid}", json={"name": None})
    assert r.status_code == 422 and fields(r) == ["name"]
    bad_items: list[tuple[dict[str, Any], str]] = [
        ({"price_minor": 0}, "price_minor"),
        ({"price_minor": 12.5}, "price_minor"),
        ({"currency": "inr"}, "currency"),
        ({"currency": "RUPEE"}, "currency"),
        ({"stock": -1}, "stock"),
        ({"per_customer_limit": 0}, "per_customer_limit"),
        ({"name": ""}, "name"),
        ({"price": 100}, "price"),
    ]
    for change, field in bad_items:
        body = {"name": "Dosa", "price_minor": 9000, "currency": "INR", **change}
        r = await c.post(f"/v1/restaurants/{rid}/menu", json=body)
        assert r.status_code == 422 and field in fields(r), (change, r.text)
    item = await new_item(c, rid)
    r = await c.patch(f"/v1/restaurants/{rid}/menu/{item['id']}", json={"price_minor": None})
    assert r.status_code == 422 and "price_minor cannot be null" in r.text


async def test_unknown_ids_are_404(app: Any) -> None:
    c, _ = app
    rid = await new_restaurant(c)
    item = await new_item(c, rid)
    other = await new_restaurant(c, "Other")
    for missing in ("blr-doesnotexist", "zzz-doesnotexist"):
        assert (await c.get(f"/v1/restaurants/{missing}")).status_code == 404
        assert (await c.get(f"/v1/restaurants/{missing}/menu")).status_code == 404
        assert (await c.patch(f"/v1/restaurants/{missing}", json={"open": True})).status_code == 404
        assert (await c.delete(f"/v1/restaurants/{missing}")).status_code == 404
        body = {"name": "X", "price_minor": 1, "currency": "INR"}
        assert (await c.post(f"/v1/restaurants/{missing}/menu", json=body)).status_code == 404
    # An item of another restaurant is no item of this one.
    r = await c.patch(f"/v1/restaurants/{other}/menu/{item['id']}", json={"available": False})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert (await c.delete(f"/v1/restaurants/{rid}/menu/itm-nothere")).status_code == 404


async def test_delete_with_an_open_food_order_is_409(app: Any) -> None:
    c, _ = app
    rid = await new_restaurant(c)
    item = await new_item(c, rid)
    drop = offset(*BLR, north_m=2000)
    order = {
        "restaurant_id": rid,
        "customer_id": "c1",
        "items": [{"item_id": item["id"], "qty": 2}],
        "dropoff": {"lat": drop[0], "lng": drop[1]},
    }
    r = await c.post("/v1/food-orders", json=order)
    assert r.status_code == 202, r.text
    order_id = r.json()["order_id"]
    r = await c.delete(f"/v1/restaurants/{rid}")
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert "open food order" in r.json()["detail"] and order_id in r.json()["detail"]
    assert (await c.get(f"/v1/restaurants/{rid}")).status_code == 200
    assert (await c.post(f"/v1/deliveries/{order_id}/cancel")).status_code == 200
    assert (await c.delete(f"/v1/restaurants/{rid}")).status_code == 204


# -- the cache


async def test_menu_cache_hit_miss_etag_and_304(app: Any) -> None:
    c, state = app
    rid = await new_restaurant(c)
    await new_item(c, rid)
    path = f"/v1/restaurants/{rid}/menu"
    with menu_queries(state["record"].engine) as queries:
        first = await c.get(path)
        assert len(queries) == 1  # a miss: read from SQL
        second = await c.get(path)
        assert len(queries) == 1  # a hit
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag == second.headers["etag"]  # strong, stable
    r = await c.get(path, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    r = await c.get(path, headers={"If-None-Match": '"other", ' + etag})
    assert r.status_code == 304
    r = await c.get(path, headers={"If-None-Match": '"stale"'})
    assert r.status_code == 200

    await new_item(c, rid, name="Kebab", price_minor=25000)
    after = await c.get(path, headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
    assert [i["name"] for i in after.json()["items"]] == ["Chicken Biryani", "Kebab"]


async def test_write_then_read_never_returns_the_old_menu(app: Any) -> None:
    c, _ = app
    rid = await new_restaurant(c)
    item = await new_item(c, rid)
    path = f"/v1/restaurants/{rid}/menu"
    stop = asyncio.Event()

    async def reader() -> None:  # keeps filling the cache while the writes go on
        while not stop.is_set():
            assert (await c.get(path)).status_code == 200

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    try:
        for price in range(1000, 1030):
            r = await c.patch(
                f"/v1/restaurants/{rid}/menu/{item['id']}", json={"price_minor": price}
            )
            assert r.status_code == 200
            menu = (await c.get(path)).json()
            assert menu["items"][0]["price_minor"] == price
    finally:
        stop.set()
        await asyncio.gather(*readers)


async def test_a_reader_that_loaded_before_a_write_cannot_refill_the_new_version(
    app: Any, redis: Redis
) -> None:
    c, state = app
    rid = await new_restaurant(c)
    item = await new_item(c, rid, price_minor=100)
    record, settings = state["record"], state["settings"]
    loaded, go_on = asyncio.Event(), asyncio.Event()

    async def slow_load(city: str, restaurant_id: str) -> bytes:
        body = await load_menu(record, restaurant_id)  # the menu before the write
        loaded.set()
        await go_on.wait()  # the write commits and bumps the version meanwhile
        return body

    racing = MenuCache(state["menus"].redis, state["menus"].scripts, settings, slow_load)
    stale = asyncio.create_task(racing.menu("blr", rid))
    await loaded.wait()
    r = await c.patch(f"/v1/restaurants/{rid}/menu/{item['id']}", json={"price_minor": 200})
    assert r.status_code == 200
    go_on.set()
    old = orjson.loads((await stale).body)
    assert old["items"][0]["price_minor"] == 100  # it started before the write: that is fair
    # ... but it filled the version it read, which no reader asks for any more.
    version = await racing.version("blr", rid)
    current = f"rf:{{blr}}:menu:{rid}:v{version}"
    assert await redis.get(f"rf:{{blr}}:menu:{rid}:v{version - 1}") is not None
    assert await redis.get(current) is None
    menu = (await c.get(f"/v1/restaurants/{rid}/menu")).json()
    assert menu["items"][0]["price_minor"] == 200
    assert "200" in (await redis.get(current) or "")


async def test_a_thousand_cold_reads_make_one_sql_query(app: Any) -> None:
    """1,000 concurrent reads of a cold menu from two "processes" (the app's cache and a second
    cache with its own in-process coalescing, on the same Redis and database), 100 of them
    through the HTTP route: one SQL query. (The reads go to the caches directly rather than all
    through in-process HTTP, whose client work would starve the loop and the Redis pool on a
    loaded machine.)"""
    c, state = app
    rid = await new_restaurant(c)
    for n in range(5):
        await new_item(c, rid, name=f"Dish {n}")
    menus: MenuCache = state["menus"]
    other = MenuCache(menus.redis, menus.scripts, state["settings"], menus.load)
    path = f"/v1/restaurants/{rid}/menu"
    with menu_queries(state["record"].engine) as queries:
        results = await asyncio.gather(
            *(c.get(path) for _ in range(100)),
            *(menus.menu("blr", rid) for _ in range(400)),
            *(other.menu("blr", rid) for _ in range(500)),
        )
    assert len(queries) == 1, queries
    answers = [r for r in results if isinstance(r, httpx.Response)]
    assert len(answers) == 100
    bad = [(r.status_code, r.text) for r in answers if r.status_code != 200]
    assert not bad, bad[:3]
    bodies = {r.content for r in answers}
    cached = {m.body for m in results if not isinstance(m, httpx.Response)}
    assert len(bodies) == 1 and cached == bodies


async def test_sql_down_is_503(flushed: RedisServer) -> None:
    from tests.servers import free_port

    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    settings = settings_for(flushed.url, database_url=down)
    async with app_with_state(settings) as (c, _):
        near = {"lat": BLR[0], "lng": BLR[1]}
        answers = [
            await c.post("/v1/restaurants", json={"name": "X", "location": near}),
            await c.get("/v1/restaurants/blr-x"),
            await c.get("/v1/restaurants"),
            await c.get("/v1/restaurants/blr-x/menu"),  # a miss: read from SQL
        ]
    for r in answers:
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "database is unreachable" in r.json()["detail"] and r.headers["retry-after"]


async def test_a_reader_that_goes_away_does_not_cancel_the_fill_others_wait_for(
    app: Any,
) -> None:
    c, state = app
    rid = await new_restaurant(c)
    await new_item(c, rid)
    record, loads, go_on = state["record"], [], asyncio.Event()

    async def slow_load(city: str, restaurant_id: str) -> bytes:
        loads.append(restaurant_id)
        await go_on.wait()
        return await load_menu(record, restaurant_id)

    cache = MenuCache(state["menus"].redis, state["menus"].scripts, state["settings"], slow_load)
    first = asyncio.create_task(cache.menu("blr", rid))
    second = asyncio.create_task(cache.menu("blr", rid))

    async def loading() -> bool:
        return bool(loads)

    await eventually(loading, 10, "the fill to start")
    first.cancel()  # its client went away
    go_on.set()
    menu = await second
    assert orjson.loads(menu.body)["restaurant_id"] == rid
    assert loads == [rid] and first.cancelled()
