"""Contracts of the food-order scripts: `food_order.lua` (reserve every limited item or none,
then store and queue the delivery), `food_release.lua` (stock back at most once) and
`menu_unlock.lua` (release only one's own fill lock)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rideflow.redis import keys
from rideflow.redis.scripts import ORDER_EVENTS_CAP, Scripts
from tests.scripts.conftest import CITY

EVENT_CAPS = (ORDER_EVENTS_CAP, 0)
"""As `Settings.event_caps()` passes them while the recorder keeps the city stream."""


def order_call(
    order_id: str, customer: str, items: list[tuple[str, int, int, int]], fingerprint: str = ""
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of food_order.lua for limited items (id, qty, limit, configured stock)."""
    script_keys = [
        keys.order(CITY, order_id),
        keys.requests(CITY),
        keys.order_events(CITY, order_id),
        keys.city_events(CITY),
        keys.retries(CITY),
        keys.idempotency(CITY, f"customer:{customer}", "k"),
        keys.reservation(CITY, order_id),
        keys.restaurant_orders(CITY, "blr-r"),
    ]
    args: list[Any] = [*EVENT_CAPS, order_id, 60_000, 3600, fingerprint, customer, 3600]
    args.append(len(items))
    for item, qty, limit, stock in items:
        script_keys += [keys.stock(CITY, item), keys.stock_buyers(CITY, item)]
        args += [item, qty, limit, stock]
    args += ["kind", "delivery", "customer", customer, "food", 1]
    return script_keys, args


async def test_food_order_reserves_all_or_none_and_queues_the_delivery(
    redis: Redis, scripts: Scripts
) -> None:
    await redis.set(keys.stock(CITY, "a"), 1)
    # b has no live count yet: seeded from the configured stock (5) on first use.
    k, a = order_call("blr-o1", "c1", [("b", 2, 0, 5), ("a", 2, 0, 1)])
    assert await scripts.food_order(keys=k, args=a) == ["SOLD_OUT", "a", 1]
    assert await redis.get(keys.stock(CITY, "b")) == "5"  # seeded, not taken
    assert not await redis.exists(keys.order(CITY, "blr-o1"), keys.reservation(CITY, "blr-o1"))
    assert await redis.xlen(keys.requests(CITY)) == 0

    k, a = order_call("blr-o2", "c1", [("b", 2, 2, 5), ("a", 1, 1, 1)])
    assert await scripts.food_order(keys=k, args=a) == ["CREATED", "blr-o2"]
    assert await redis.mget(keys.stock(CITY, "a"), keys.stock(CITY, "b")) == ["0", "3"]
    assert await redis.hgetall(keys.reservation(CITY, "blr-o2")) == {
        "customer": "c1",
        "state": "held",
        "item:b": "2",
        "item:a": "1",
    }
    order = await redis.hgetall(keys.order(CITY, "blr-o2"))
    assert order["status"] == "QUEUED" and order["kind"] == "delivery" and order["food"] == "1"
    assert await redis.xlen(keys.requests(CITY)) == 1
    assert await redis.zscore(keys.restaurant_orders(CITY, "blr-r"), "blr-o2") is not None
    # The same customer past b's limit of 2.
    k, a = order_call("blr-o3", "c1", [("b", 1, 2, 5)])
    assert await scripts.food_order(keys=k, args=a) == ["LIMIT", "b", 2]
    # A replayed call changes nothing.
    k, a = order_call("blr-o2", "c1", [("b", 2, 2, 5)])
    assert await scripts.food_order(keys=k, args=a) == ["EXISTING", "blr-o2"]
    assert await redis.get(keys.stock(CITY, "b")) == "3"


async def test_food_order_idempotency_key(redis: Redis, scripts: Scripts) -> None:
    k, a = order_call("blr-o1", "c1", [("a", 1, 0, 9)], fingerprint="f1")
    assert await scripts.food_order(keys=k, args=a) == ["CREATED", "blr-o1"]
    k, a = order_call("blr-o2", "c1", [("a", 1, 0, 9)], fingerprint="f1")
    assert await scripts.food_order(keys=k, args=a) == ["EXISTING", "blr-o1"]
    k, a = order_call("blr-o3", "c1", [("a", 2, 0, 9)], fingerprint="f2")
    assert await scripts.food_order(keys=k, args=a) == ["CONFLICT", "blr-o1"]
    assert await redis.get(keys.stock(CITY, "a")) == "8"


async def test_food_release_returns_stock_once(redis: Redis, scripts: Scripts) -> None:
    k, a = order_call("blr-o1", "c1", [("a", 2, 3, 5), ("b", 1, 0, 1)])
    assert (await scripts.food_order(keys=k, args=a))[0] == "CREATED"
    release_keys = [
        keys.reservation(CITY, "blr-o1"),
        keys.stock(CITY, "a"),
        keys.stock_buyers(CITY, "a"),
        keys.stock(CITY, "b"),
        keys.stock_buyers(CITY, "b"),
    ]
    assert await scripts.food_release(keys=release_keys[:3], args=["a"]) == ["MISMATCH"]
    assert await scripts.food_release(keys=release_keys, args=["a", "b"]) == ["RELEASED", 3]
    assert await redis.mget(keys.stock(CITY, "a"), keys.stock(CITY, "b")) == ["5", "1"]
    assert await redis.hget(keys.stock_buyers(CITY, "a"), "c1") is None
    assert await scripts.food_release(keys=release_keys, args=["a", "b"]) == ["NONE"]
    assert await redis.mget(keys.stock(CITY, "a"), keys.stock(CITY, "b")) == ["5", "1"]
    assert await scripts.food_release(keys=[keys.reservation(CITY, "blr-x")]) == ["NONE"]


async def test_menu_unlock_releases_only_its_own_lock(redis: Redis, scripts: Scripts) -> None:
    lock = keys.menu_fill_lock(CITY, "blr-r", 3)
    await redis.set(lock, "theirs", px=10_000)
    assert await scripts.menu_unlock(keys=[lock], args=["mine"]) == 0
    assert await redis.get(lock) == "theirs"
    assert await scripts.menu_unlock(keys=[lock], args=["theirs"]) == 1
    assert not await redis.exists(lock)
