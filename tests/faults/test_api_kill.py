"""API processes killed with `kill -9` while they accept orders: no half-written order. Every
order Redis holds afterwards, acknowledged or not (a reply that died with its process), has all
of its fields, an event history that agrees with them, an entry on the city's event stream, and
is dispatched: simulated drivers drive every one of them to its end. Every 202 a client got is
among them. (An order is stored, queued and its first event written by one Lua script,
`order_enqueue.lua`, which is why this holds; a write split over several calls would leave
orders here that never reach a driver, or miss a field.)"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, cast

import pytest
from bench.order_flow import DriverCrew, OrderLoad, order_statuses
from redis.asyncio import Redis

from rideflow.orders.states import FINAL
from rideflow.redis import keys
from tests.auth import admin
from tests.faults.conftest import fault_settings
from tests.faults.ledger import missing_fields, redis_orders
from tests.servers import RedisServer, Service, eventually

KILLS = 3
RATE = 100.0
"""Per API process: the survivor's and the victim's together make 200 orders/s."""
RIDE_FIELDS = (
    "id", "kind", "status", "customer", "pickup", "dropoff", "strategy", "attempts", "offers",
    "deadline", "window_ms", "t_QUEUED",
)  # fmt: skip
"""What `order_enqueue.lua` writes into every ride's hash."""
QUEUED_FIELDS = ("customer", "pickup", "dropoff", "strategy", "kind", "window_ms")
"""What the QUEUED event carries of the order, as its hash holds it."""


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_an_api_killed_mid_load_leaves_no_half_written_order(
    flushed: RedisServer,
    redis: Redis,
    stack: Callable[..., Any],
    services: Callable[..., Service],
    report: Callable[[str], None],
) -> None:
    settings = fault_settings(flushed.url)
    survivor, dispatchers = stack(settings)
    crew = DriverCrew(settings, 100)
    await crew.seed()
    stop_crew = asyncio.Event()
    crewing = asyncio.create_task(crew.run(stop_crew))
    headers = {"Content-Type": "application/json", **admin(settings)}
    rng = random.Random(12)
    loads: list[OrderLoad] = []
    try:
        steady = OrderLoad(survivor.port, headers, RATE, seed=100)
        loads.append(steady)
        steady_run = asyncio.create_task(steady.run(KILLS * 8.0))
        for k in range(KILLS):
            victim = services("api", settings, name=f"victim-{k}")
            load = OrderLoad(victim.port, headers, RATE, connections=16, seed=k + 1)
            loads.append(load)
            running = asyncio.create_task(load.run(4.0))
            await asyncio.sleep(rng.uniform(1.0, 3.0))  # pacing: the kill's moment
            victim.kill9()
            await running
            assert load.acknowledged(), f"victim {k} acknowledged nothing before its kill"
        await steady_run

        acked = {o for load in loads for o in load.acknowledged()}
        stored = await stored_orders(redis, "blr")
        missing = acked - set(stored)
        assert not missing, (
            f"{len(missing)} acknowledged orders are not stored: {sorted(missing)[:3]}"
        )
        orders = await redis_orders(redis, "blr", sorted(stored))
        incomplete = {o: missing_fields(h, RIDE_FIELDS) for o, h in orders.items()}
        incomplete = {o: f for o, f in incomplete.items() if f}
        assert not incomplete, f"orders missing fields: {list(incomplete.items())[:3]}"
        await check_histories(redis, "blr", orders)

        async def all_final() -> bool:
            statuses = await order_statuses(redis, "blr", sorted(stored))
            return all(s in FINAL for s in statuses)

        await eventually(all_final, 60, "every stored order to be driven to its end")
        statuses = await order_statuses(redis, "blr", sorted(stored))
        assert set(statuses) == {"COMPLETED"}, set(statuses)
        assert survivor.alive() and all(d.alive() for d in dispatchers)
        unacknowledged = len(stored) - len(acked)
        report(
            f"API kill -9 x{KILLS} at {2 * RATE:g} orders/s: {len(stored)} orders stored, all"
            f" complete and completed by a driver; {len(acked)} acknowledged, all stored;"
            f" {unacknowledged} stored whose reply died with the process;"
            f" {sum(load.result.errors for load in loads if load.result)} requests with no"
            " answer (in flight at a kill, or sent to a dead port)"
        )
    finally:
        stop_crew.set()
        await crewing


async def stored_orders(redis: Redis, city: str) -> set[str]:
    """Every order hash of the city, by id (offers, events and exclusions are other keys)."""
    prefix = keys.order(city, "")
    found = set()
    async for key in redis.scan_iter(match=prefix + "*", count=1000, _type="hash"):
        found.add(str(key).removeprefix(prefix))
    return found


async def check_histories(redis: Redis, city: str, orders: dict[str, dict[str, str]]) -> None:
    """Each order's first event is its QUEUED event, carrying what its hash holds, at its
    t_QUEUED, and the city's event stream holds that same event."""
    ids = sorted(orders)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        async with redis.pipeline(transaction=False) as pipe:
            for order_id in chunk:
                pipe.xrange(keys.order_events(city, order_id), count=1)
            firsts = cast(list[list[tuple[str, dict[str, str]]]], await pipe.execute())
        async with redis.pipeline(transaction=False) as pipe:
            for ((entry_id, _),) in firsts:
                pipe.xrange(keys.city_events(city), min=entry_id, max=entry_id)
            on_city = cast(list[list[tuple[str, dict[str, str]]]], await pipe.execute())
        for order_id, first, city_entry in zip(chunk, firsts, on_city, strict=True):
            h = orders[order_id]
            assert len(first) == 1, f"order {order_id} has no event"
            _, event = first[0]
            assert event["status"] == "QUEUED" and event["at"] == h["t_QUEUED"], (order_id, event)
            for name in QUEUED_FIELDS:
                assert event.get(name) == h[name], (order_id, name, event, h)
            assert [f for _, f in city_entry] == [{"order": order_id, **event}], order_id
