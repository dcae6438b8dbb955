"""Limited items' live stock in Redis, under the restaurant's city hash tag (so that one Lua step
reserves stock and queues the delivery): set from SQL's configured stock when an item is created
or its stock changed, and given back at most once per order (`food_release.lua`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple, cast

from redis.asyncio import Redis

from rideflow.redis import keys
from rideflow.redis.scripts import Scripts


class Released(StrEnum):
    RELEASED = "RELEASED"
    NONE = "NONE"
    """No held reservation: none made, released before, or expired."""
    MISMATCH = "MISMATCH"


class Release(NamedTuple):
    outcome: Released
    units: int = 0


def parse_release(reply: list[Any]) -> Release:
    return Release(Released(reply[0]), int(reply[1]) if len(reply) > 1 else 0)


class StockRoom:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis, self.scripts = redis, scripts

    async def configure(self, city: str, item_id: str, stock: int | None) -> None:
        """After SQL committed an item's configured stock: the live count starts from it (a
        restock). None: the item is unlimited, its count goes."""
        if stock is None:
            await self.redis.delete(keys.stock(city, item_id))
        else:
            await self.redis.set(keys.stock(city, item_id), stock)

    async def forget(self, city: str, item_ids: list[str]) -> None:
        """Items deleted: their live counts and buyers go."""
        if item_ids:
            names = [k for i in item_ids for k in (keys.stock(city, i), keys.stock_buyers(city, i))]
            await self.redis.delete(*names)

    async def left(self, city: str, item_id: str) -> int | None:
        raw = await self.redis.get(keys.stock(city, item_id))
        return int(raw) if raw is not None else None

    async def release(self, city: str, order_id: str) -> Release:
        """Give an order's reserved stock back, at most once."""
        reservation = keys.reservation(city, order_id)
        for _ in range(3):
            held = cast(dict[str, str], await self.redis.hgetall(reservation))
            if held.get("state") != "held":
                return Release(Released.NONE)
            items = sorted(f[5:] for f in held if f.startswith("item:"))
            script_keys = [reservation]
            for item in items:
                script_keys += [keys.stock(city, item), keys.stock_buyers(city, item)]
            result = parse_release(await self.scripts.food_release(keys=script_keys, args=items))
            if result.outcome is not Released.MISMATCH:
                return result
        return Release(Released.MISMATCH)
