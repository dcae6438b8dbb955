"""What Redis and the record (SQL) hold about a run's orders, read back for the fault tests'
accounts: every event of every order, every stored order's fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy import select

from rideflow.record.db import create_engine
from rideflow.record.models import Order, OrderEvent
from rideflow.redis import keys


async def redis_events(redis: Redis, city: str, order_ids: Sequence[str]) -> set[str]:
    """The ids of every event of the orders, from their own event streams (each carries the
    id its event has on the city stream, which the recorder records)."""
    ids: set[str] = set()
    for start in range(0, len(order_ids), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for order_id in order_ids[start : start + 500]:
                pipe.xrange(keys.order_events(city, order_id))
            for entries in await pipe.execute():
                ids.update(entry_id for entry_id, _ in entries)
    return ids


async def redis_orders(
    redis: Redis, city: str, order_ids: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Each order's hash (empty when there is no such order)."""
    out: dict[str, dict[str, str]] = {}
    for start in range(0, len(order_ids), 500):
        chunk = order_ids[start : start + 500]
        async with redis.pipeline(transaction=False) as pipe:
            for order_id in chunk:
                pipe.hgetall(keys.order(city, order_id))
            hashes = cast(list[dict[str, str]], await pipe.execute())
        out.update(zip(chunk, hashes, strict=True))
    return out


class RecordReader:
    """Reads the record (SQL) while a recorder writes it."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    async def event_ids(self, city: str) -> set[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(OrderEvent.entry_id).where(OrderEvent.city == city))
            return {str(r[0]) for r in rows}

    async def order_statuses(self, city: str) -> dict[str, str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Order.id, Order.status).where(Order.city == city))
            return {str(r[0]): str(r[1]) for r in rows}

    async def aclose(self) -> None:
        await self.engine.dispose()


def missing_fields(h: dict[str, Any], required: Sequence[str]) -> list[str]:
    return [f for f in required if not h.get(f)]
