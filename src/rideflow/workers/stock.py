"""The stock releaser: a handler on the shared stream runner, with its own consumer group
(`stock`) on every city's event stream, that gives a food order's reserved stock back when the
order is cancelled or ends NO_DRIVER_FOUND. The release is one Lua step that returns stock at
most once per order, so an event handled twice (a reclaim, a replay) changes nothing. Any final
event of a food order also takes it out of its restaurant's index of possibly open orders (which
`DELETE /v1/restaurants/{id}` reads, pruning it as well)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import cast

from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.orders.states import FINAL
from rideflow.redis import keys
from rideflow.redis.connections import create_redis
from rideflow.redis.scripts import Scripts
from rideflow.redis.streams import Entry
from rideflow.restaurants.stock import Released, StockRoom
from rideflow.workers.runner import READ_BLOCK_MS, Handler, Runner

log = logging.getLogger("rideflow.stock")

RELEASING = ("CANCELLED", "NO_DRIVER_FOUND")
MAX_DELIVERIES = 5


class StockReleaser(Handler):
    def __init__(self, settings: Settings, cities: list[str], *, burst: bool = False) -> None:
        super().__init__(
            name="stock",
            group=keys.STOCK_GROUP,
            streams=[keys.city_events(c) for c in cities],
            claim_idle_ms=settings.claim_idle_ms,
            workers=4,
            batch=100,
            max_deliveries=MAX_DELIVERIES,
        )
        self.city_of = {keys.city_events(c): c for c in cities}
        self.redis: Redis = create_redis(settings, "stock", socket_timeout=READ_BLOCK_MS / 1000 + 5)
        self.stock = StockRoom(self.redis, Scripts.register(self.redis))
        self.runner = Runner(self.redis, self, burst=burst)

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        return await self.runner.run(stop)

    async def handle(self, batch: list[Entry]) -> None:
        done: dict[str, list[str]] = {}
        for entry in batch:
            status, order_id = entry.fields.get("status"), entry.fields.get("order")
            if status in FINAL and order_id:
                await self._settled(self.city_of[entry.stream], order_id)
            if status in RELEASING and order_id:
                city = self.city_of[entry.stream]
                released = await self.stock.release(city, order_id)
                if released.outcome is Released.RELEASED:
                    self.counts["released"] += 1
                    self.counts["units"] += released.units
                    log.info(
                        "order %s %s: %d unit(s) back in stock",
                        entry.fields["order"],
                        entry.fields["status"],
                        released.units,
                    )
            self.counts["events"] += 1
            done.setdefault(entry.stream, []).append(entry.id)
        for stream, ids in done.items():
            await self.redis.xack(stream, self.group, *ids)

    async def _settled(self, city: str, order_id: str) -> None:
        """A food order ended: out of its restaurant's index of orders that may be open."""
        reply = await self.redis.hmget(keys.order(city, order_id), ["food", "restaurant"])
        food, restaurant = cast(list[str | None], reply)
        if food == "1" and restaurant:
            await self.redis.zrem(keys.restaurant_orders(city, restaurant), order_id)


async def run_stock(
    settings: Settings,
    cities: list[str] | None = None,
    *,
    stop: asyncio.Event | None = None,
    burst: bool = False,
) -> Counter[str]:
    """Release stock until `stop` is set (or, in burst mode, until the streams are drained)."""
    codes = cities or [c.code for c in settings.cities]
    return await StockReleaser(settings, codes, burst=burst).run(stop or asyncio.Event())
