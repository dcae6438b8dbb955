"""`rideflow audit`: read Redis and report any breach of the dispatch invariant (a driver holds at
most one active order and an order at most one driver), any lease or offer past its deadline still
held, any order waiting for a search that nothing will make, and any order in no known state.

Orders, drivers and leases are read in separate scans, not one snapshot: on a system that is
dispatching, an order moving on between the scans can show as a breach. Run it when work has
stopped (as the tests and benchmarks do), or run it twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import cast

from redis.asyncio import Redis

from rideflow.orders.states import HOLDING, STATUSES, WAITING
from rideflow.redis import keys
from rideflow.redis.keys import order_in

BATCH = 500
LATE_MS = 1_000
"""How far past its deadline a pending offer may be before it counts as not swept."""


async def _hashes(
    redis: Redis, pattern: str, fields: list[str]
) -> AsyncIterator[tuple[str, list[str | None]]]:
    """(key, values of `fields`) for every hash matching `pattern`, read in pipelined batches."""
    batch: list[str] = []

    async def flush() -> list[tuple[str, list[str | None]]]:
        async with redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.hmget(key, fields)
            values = cast(list[list[str | None]], await pipe.execute())
        # A hash that expired between the scan and the read (a finished order past its
        # retention) comes back all None: it is gone, not broken.
        return [
            (key, vals)
            for key, vals in zip(batch, values, strict=True)
            if any(v is not None for v in vals)
        ]

    async for key in redis.scan_iter(match=pattern, count=1000, _type="hash"):
        batch.append(str(key))
        if len(batch) >= BATCH:
            for item in await flush():
                yield item
            batch = []
    if batch:
        for item in await flush():
            yield item


async def audit_city(redis: Redis, city: str) -> list[str]:
    """Every breach found in one city, as sentences."""
    found: list[str] = []
    order_prefix, driver_prefix = keys.order(city, ""), keys.driver(city, "")
    orders: dict[str, tuple[str | None, str | None, str | None]] = {}
    async for key, (status, driver, offer) in _hashes(
        redis, order_prefix + "*", ["status", "driver", "offer"]
    ):
        order_id = key.removeprefix(order_prefix)
        orders[order_id] = (status, driver, offer)
        if status not in STATUSES:
            found.append(f"order {order_id} is in no known state ({status!r})")
        elif status in HOLDING and not driver:
            found.append(f"order {order_id} is {status} with no driver")
        elif status == "OFFERED" and not offer:
            found.append(f"order {order_id} is OFFERED with no offer")
    holders: dict[str, list[str]] = defaultdict(list)
    pool = keys.pool(city)
    async for key, (held, offer) in _hashes(redis, driver_prefix + "*", ["order", "offer"]):
        driver_id = key.removeprefix(driver_prefix)
        if not held:
            continue
        holders[held].append(driver_id)
        status, named, order_offer = orders.get(held, (None, None, None))
        if status not in HOLDING or named != driver_id:
            found.append(
                f"driver {driver_id} holds order {held}, which is {status or 'gone'} "
                f"with driver {named or 'none'}"
            )
        elif (offer or None) != (order_offer if status == "OFFERED" else None):
            found.append(
                f"driver {driver_id} has offer {offer!r}; order {held} has {order_offer!r}"
            )
        if await redis.zscore(pool, driver_id) is not None:
            found.append(f"driver {driver_id} holds order {held} but is in the available pool")
    for order_id, by in holders.items():
        if len(by) > 1:
            found.append(f"order {order_id} is held by {len(by)} drivers: {sorted(by)}")
    orders_of: dict[str, list[str]] = defaultdict(list)
    for order_id, (status, driver, _offer) in orders.items():
        if status in HOLDING and driver:
            orders_of[driver].append(order_id)
            if driver not in holders.get(order_id, []):
                found.append(f"order {order_id} names driver {driver}, who does not hold it")
    for driver_id, active in orders_of.items():
        if len(active) > 1:
            found.append(f"driver {driver_id} has {len(active)} active orders: {sorted(active)}")
    found += await _late_offers(redis, city, orders)
    found += await _stranded(redis, city, orders)
    return found


async def _stranded(
    redis: Redis, city: str, orders: dict[str, tuple[str | None, str | None, str | None]]
) -> list[str]:
    """Orders waiting for a search that nothing will make: in neither the request stream nor
    the retry set."""
    waiting = {o for o, (status, _, _) in orders.items() if status in WAITING}
    if not waiting:
        return []
    queued: set[str] = set()
    start = "-"
    while True:
        entries = cast(
            list[tuple[str, dict[str, str]]],
            await redis.xrange(keys.requests(city), min=start, count=10_000),
        )
        queued |= {order_in(f) for _, f in entries}
        if len(entries) < 10_000:
            break
        start = "(" + entries[-1][0]
    scheduled = set(cast(list[str], await redis.zrange(keys.retries(city), 0, -1)))
    return [
        f"order {o} is {orders[o][0]} but neither queued nor due for another search"
        for o in sorted(waiting - queued - scheduled)
    ]


async def _late_offers(
    redis: Redis, city: str, orders: dict[str, tuple[str | None, str | None, str | None]]
) -> list[str]:
    """Offers past their deadline still pending, and leases held for no pending offer."""
    found: list[str] = []
    now_s, now_us = await redis.time()
    now_ms = now_s * 1000 + now_us // 1000
    late = await redis.zrangebyscore(
        keys.offers_due(city), "-inf", now_ms - LATE_MS, withscores=True
    )
    for offer_id, deadline in cast(list[tuple[str, float]], late):
        found.append(
            f"offer {offer_id} is still pending {now_ms - int(deadline)} ms after its deadline"
        )
    offered = {
        offer: driver or ""
        for status, driver, offer in orders.values()
        if status == "OFFERED" and offer
    }
    lease_prefix = keys.lease(city, "")
    async for key in redis.scan_iter(match=lease_prefix + "*", count=1000):
        driver_id = str(key).removeprefix(lease_prefix)
        value = cast(str | None, await redis.get(key))
        if value is None:
            continue
        _token, _, rest = value.partition("|")
        order_id, _, offer_id = rest.partition("|")
        if offered.get(offer_id) != driver_id:
            status = orders.get(order_id, (None, None, None))[0]
            found.append(
                f"driver {driver_id} still holds a lease for offer {offer_id} of order "
                f"{order_id}, which is {status or 'gone'}"
            )
    for offer_id, driver_id in offered.items():
        if driver_id and not await redis.exists(keys.lease(city, driver_id)):
            found.append(f"offer {offer_id} is pending but driver {driver_id} holds no lease")
    return found


async def audit(redis: Redis, cities: list[str]) -> list[str]:
    """Every breach found in the given cities."""
    found: list[str] = []
    for city in cities:
        found += [f"{city}: {line}" for line in await audit_city(redis, city)]
    return found
