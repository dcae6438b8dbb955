"""The compact picture of a city's drivers that admin sockets asking for it (`subscribe.city`
with `snapshot: true`) get on subscribing and then every `RIDEFLOW_WS_SNAPSHOT_EVERY_S`: the
dashboard's live map. One read per city per interval, shared by every admin socket of the
process, and only while one follows the city."""

from __future__ import annotations

import time
from typing import Any, cast

from redis.asyncio import Redis

from rideflow.redis import keys

AVAILABLE, BUSY, UNAVAILABLE = "a", "b", "u"
"""A driver's state on the map: in the pool; holding an order or an offer; neither (offline,
or online but not matchable)."""
DIGITS = 5
"""Coordinates are rounded to 5 decimals (about a metre): the message stays ~40 bytes a driver."""


def state_of(status: str | None, order: str | None, offer: str | None, pooled: bool) -> str:
    """A driver's map state from their hash's fields and pool membership."""
    if order or offer:
        return BUSY
    if pooled and status == "online":
        return AVAILABLE
    return UNAVAILABLE


async def driver_snapshot(redis: Redis, city: str, stale_ms: int) -> dict[str, Any]:
    """Every driver of `city` seen within the staleness window, as `[id, lat, lng, state]`,
    read in two round trips (the fresh ids, then their hashes and pool scores pipelined)."""
    fresh_after = int(time.time() * 1000) - stale_ms
    ids = cast(list[str], await redis.zrangebyscore(keys.seen(city), fresh_after, "+inf"))
    drivers: list[list[Any]] = []
    counts = {AVAILABLE: 0, BUSY: 0, UNAVAILABLE: 0}
    if ids:
        async with redis.pipeline(transaction=False) as pipe:
            for driver_id in ids:
                pipe.hmget(keys.driver(city, driver_id), ["status", "order", "offer", "lat", "lng"])
            pipe.zmscore(keys.pool(city), ids)
            replies = await pipe.execute()
        pooled = replies[-1]
        for driver_id, fields, score in zip(ids, replies[:-1], pooled, strict=True):
            status, order, offer, lat, lng = fields
            if not lat or not lng:
                continue
            state = state_of(status, order, offer, score is not None)
            counts[state] += 1
            drivers.append([driver_id, round(float(lat), DIGITS), round(float(lng), DIGITS), state])
    return {
        "city": city,
        "at_ms": int(time.time() * 1000),
        "available": counts[AVAILABLE],
        "busy": counts[BUSY],
        "unavailable": counts[UNAVAILABLE],
        "drivers": drivers,
    }


FINAL = frozenset({"COMPLETED", "DELIVERED", "CANCELLED", "NO_DRIVER_FOUND"})
MAX_OPEN = 20_000
"""Open orders remembered per city; past it the oldest are forgotten (a map, not a record)."""


class OpenOrders:
    """The city's open orders and their pickups, as this process saw them queued on the city's
    event stream (orders queued before it started reading are not on the map)."""

    def __init__(self) -> None:
        self.by_city: dict[str, dict[str, list[Any]]] = {}

    def saw(self, city: str, fields: dict[str, str]) -> None:
        """One event of the city's stream."""
        order_id, status = fields.get("order", ""), fields.get("status", "")
        orders = self.by_city.setdefault(city, {})
        if status in FINAL:
            orders.pop(order_id, None)
            return
        known = orders.get(order_id)
        if known is not None:
            known[3] = status
            return
        lat, _, lng = fields.get("pickup", "").partition(",")
        if status != "QUEUED" or not lat or not lng:
            return
        if len(orders) >= MAX_OPEN:
            orders.pop(next(iter(orders)))
        orders[order_id] = [order_id, round(float(lat), DIGITS), round(float(lng), DIGITS), status]

    def of(self, city: str) -> list[list[Any]]:
        """`[order id, pickup lat, pickup lng, status]` of the city's open orders."""
        return list(self.by_city.get(city, {}).values())
