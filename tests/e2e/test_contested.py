"""Contested at scale: 5,000 orders against 50 drivers who accept, reject or ignore offers at
random, dispatchers in 2 processes, one killed with `kill -9` midway. Checked from the city's
event stream, transition by transition, not only from the final state."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.dispatch.audit import audit
from rideflow.errors import Conflict, NotFound
from rideflow.redis import keys
from rideflow.services import build_services
from tests.e2e.test_concurrency import post_rides, register_drivers, scatter
from tests.servers import Service

ORDERS, DRIVERS = 5_000, 50
FINAL = {"COMPLETED", "CANCELLED", "NO_DRIVER_FOUND"}
RELEASING = {"SEARCHING", "COMPLETED", "DELIVERED", "CANCELLED"}
HOLDING = {"ACCEPTED", "DRIVER_ARRIVING", "PICKED_UP"}


class Drivers:
    """50 drivers answering their offers at random, racing the dispatcher processes: they read
    pending offers from the deadline set and answer through the same services the API uses."""

    def __init__(self, redis: Redis, settings: Settings, seed: int) -> None:
        services = build_services(settings, redis)
        self.redis = redis
        self.offers, self.orders = services.offers, services.orders
        self.rng = random.Random(seed)
        self.busy: set[str] = set()
        self.ignored: set[str] = set()
        self.tally: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            for offer_id in await self.redis.zrange(keys.offers_due("blr"), 0, -1):
                if offer_id not in self.busy and offer_id not in self.ignored:
                    self.busy.add(offer_id)
                    task = asyncio.create_task(self._answer(offer_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)

    async def _answer(self, offer_id: str) -> None:
        try:
            offer = await self.offers.get(offer_id)
            roll = self.rng.random()
            if roll < 0.1:
                self.tally["ignored"] += 1  # lapses at its deadline
                self.ignored.add(offer_id)
                return
            verb = "accept" if roll < 0.6 else "reject"
            answered = await self.offers.answer(offer_id, verb, offer.driver_id, offer.token)
            self.tally[verb] += 1
            if answered.status == "ACCEPTED":
                for step in ("arriving", "picked-up", "complete"):
                    await self.orders.step(offer.order_id, "ride", step, offer.driver_id)
        except (Conflict, NotFound):
            self.tally["refused"] += 1  # lapsed meanwhile: the answer is refused, as it should be
        finally:
            self.busy.discard(offer_id)


def replay(events: list[tuple[str, dict[str, str]]]) -> Counter[str]:
    """Walk every transition in the order Redis applied it; fail at the first moment a driver
    holds two orders or an order two drivers."""
    holder: dict[str, str] = {}  # driver -> order
    driver_of: dict[str, str] = {}  # order -> driver
    seen: Counter[str] = Counter()
    for event_id, e in events:
        order, status, driver = e["order"], e["status"], e.get("driver", "")
        seen[status] += 1
        if status == "OFFERED":
            assert driver not in holder, (
                f"{event_id}: {driver} offered {order} holding {holder[driver]}"
            )
            assert order not in driver_of, (
                f"{event_id}: {order} offered to {driver} and {driver_of[order]}"
            )
            holder[driver], driver_of[order] = order, driver
        elif status in HOLDING:
            assert holder.get(driver) == order, f"{event_id}: {driver} not holding {order}"
        elif status in RELEASING and driver:
            assert holder.get(driver) == order, f"{event_id}: {driver} releases {order} unheld"
            del holder[driver], driver_of[order]
    assert not holder, f"still held at the end: {holder}"
    return seen


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_five_thousand_orders_fifty_drivers_random_answers_a_dispatcher_killed(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    settings = settings.model_copy(
        update={
            "ride_deadline_s": 240.0,
            "ride_offer_window_s": 0.5,
            "max_lapses": 1_000,
            "driver_stale_s": 900.0,
            "claim_idle_ms": 500,
            "retry_lease_ms": 500,
            "retry_base_s": 0.05,
            "retry_max_s": 0.2,
        }
    )
    api = services("api", settings)
    victim = services("dispatcher", settings, name="victim", concurrency=16)
    services("dispatcher", settings, name="survivor", concurrency=16)
    drivers = Drivers(redis, settings, seed=7)
    stop = asyncio.Event()
    answering = asyncio.create_task(drivers.run(stop))
    await register_drivers(
        api.port, [f"d{i}" for i in range(DRIVERS)], scatter(DRIVERS, 1500, seed=5)
    )
    ride_ids = await post_rides(api.port, scatter(ORDERS, 1500, seed=6))
    # Midway: a fifth of the orders are final; the victim dies holding whatever it held.
    await final_count(redis, ride_ids, ORDERS // 5, within=120)
    victim.kill9()
    rides = await final_count(redis, ride_ids, ORDERS, within=300)
    stop.set()
    await answering

    statuses = Counter(r["status"] for r in rides)
    assert set(statuses) <= FINAL, statuses
    assert statuses["COMPLETED"] > ORDERS * 0.9, statuses
    events = await redis.xrange(keys.city_events("blr"))
    seen = replay(events)
    assert seen["QUEUED"] == ORDERS  # the stream holds every transition: nothing was trimmed
    assert seen["COMPLETED"] == statuses["COMPLETED"]
    assert seen["OFFERED"] > seen["COMPLETED"]  # rejections and lapses led to new offers
    assert drivers.tally["reject"] > 500 and drivers.tally["ignored"] > 100, drivers.tally
    assert await audit(redis, ["blr"]) == []
    assert await redis.zcard(keys.pool("blr")) == DRIVERS  # everyone free again


async def final_count(
    redis: Redis, ride_ids: list[str], n: int, within: float
) -> list[dict[str, Any]]:
    """Wait until at least `n` of the rides are final; return all of them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        async with redis.pipeline(transaction=False) as pipe:
            for ride_id in ride_ids:
                pipe.hgetall(keys.order("blr", ride_id))
            rides: list[dict[str, Any]] = await pipe.execute()
        assert all(rides), "an order was lost"
        done = sum(r["status"] in FINAL for r in rides)
        if done >= n:
            return rides
        assert loop.time() < deadline, Counter(r["status"] for r in rides)
        await asyncio.sleep(0.2)
