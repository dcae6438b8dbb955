"""Orders flowing through a running RideFlow while a fault is inflicted: a paced client that
posts rides and keeps every answer (which orders were acknowledged, when), and a crew of
simulated drivers that accept every offer made to them and drive the trip to its end.

Shared by the fault suite (`tests/faults/`) and figure 20 of `make bench`, so both count the
same things the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bench.loadgen import LoadResult, run_load
from rideflow.config import Settings
from rideflow.drivers.schemas import DriverCreate, DriverLocation
from rideflow.errors import RideflowError
from rideflow.orders.states import FINAL
from rideflow.redis import keys
from rideflow.redis.connections import create_redis
from rideflow.services import Services, build_services

CENTRE = (12.9716, 77.5946)
PICKUP_SPREAD_M = 600.0
"""Pickups fall within this distance of the centre, where the crew's drivers wait: the first
(1 km) search finds them."""
READ_BLOCK_MS = 500
RETRY_FOR_S = 60.0
"""How long a driver keeps trying a step while Redis is away before giving the trip up."""
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
NEXT_STEP = {"ACCEPTED": "arriving", "DRIVER_ARRIVING": "picked-up", "PICKED_UP": "complete"}
"""The driver's step out of each status of a ride they hold."""


def near(rng: random.Random, centre: tuple[float, float], radius_m: float) -> tuple[float, float]:
    """A point uniformly within `radius_m` of `centre`."""
    r, angle = radius_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    north, east = r * math.cos(angle), r * math.sin(angle)
    lat = centre[0] + north / 111_320.0
    lng = centre[1] + east / (111_320.0 * math.cos(math.radians(centre[0])))
    return round(lat, 6), round(lng, 6)


# ---------------------------------------------------------------------------------------------
# The client


@dataclass(frozen=True, slots=True)
class Answer:
    """One request and what became of it (times are `time.monotonic()`)."""

    index: int
    sent: float
    answered: float
    status: int
    order_id: str | None


@dataclass
class OrderLoad:
    """`POST /v1/rides` at `rate` per second, open loop (a server that stalls does not slow the
    schedule), over keep-alive connections that reconnect after an error. Every answer is kept;
    a request whose connection broke before its answer is in `result.errors`."""

    port: int
    headers: dict[str, str]
    rate: float
    connections: int = 8
    centre: tuple[float, float] = CENTRE
    seed: int = 1
    answers: list[Answer] = field(default_factory=list)
    result: LoadResult | None = None
    _sent: dict[int, float] = field(default_factory=dict)

    def _make(self, i: int) -> tuple[str, str, bytes, dict[str, str]]:
        rng = random.Random(self.seed * 1_000_003 + i)
        pickup = near(rng, self.centre, PICKUP_SPREAD_M)
        body = {
            "rider_id": f"fault-rider-{i % 500}",
            "pickup": {"lat": pickup[0], "lng": pickup[1]},
            "dropoff": {"lat": pickup[0] + 0.01, "lng": pickup[1] + 0.01},
        }
        self._sent[i] = time.monotonic()
        return ("POST", "/v1/rides", orjson.dumps(body), self.headers)

    def _answered(self, i: int, status: int, body: bytes) -> None:
        order_id = None
        if status == 202:
            order_id = str(orjson.loads(body)["ride_id"])
        sent = self._sent.pop(i, math.nan)
        self.answers.append(Answer(i, sent, time.monotonic(), status, order_id))

    async def run(self, duration_s: float) -> LoadResult:
        """Post for `duration_s`; the load generator's summary."""
        self.result = await run_load(
            "127.0.0.1",
            self.port,
            self._make,
            mode="open",
            rate=self.rate,
            connections=self.connections,
            duration_s=duration_s,
            max_requests=int(self.rate * duration_s) + 1,
            grace_s=10.0,
            on_response=self._answered,
        )
        return self.result

    def acknowledged(self, before: float = math.inf, after: float = -math.inf) -> list[str]:
        """Ids of the orders answered 202, answered within (after, before)."""
        return [
            a.order_id
            for a in self.answers
            if a.order_id is not None and after < a.answered < before
        ]

    def statuses(self) -> Counter[int]:
        """How many answers of each status."""
        return Counter(a.status for a in self.answers)


# ---------------------------------------------------------------------------------------------
# The drivers


@dataclass
class CrewStats:
    """What the crew did: offers seen, accepted, trips completed, and what got in the way."""

    offers: int = 0
    accepted: int = 0
    completed: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    """Domain answers that ended a trip early, by their title (e.g. an offer that lapsed)."""
    unavailable: int = 0
    """Calls that found Redis away and were tried again."""
    given_up: int = 0


class DriverCrew:
    """Simulated drivers in this process, calling RideFlow's own services (the scripts the API
    runs): every offer made to one of them is accepted at once and the trip driven to its end,
    so the driver is back in the pool within milliseconds. Offers are seen on the city's event
    stream (as the API's hub sees them); while Redis is away every call is tried again."""

    def __init__(
        self,
        settings: Settings,
        drivers: int,
        *,
        prefix: str = "crew",
        centre: tuple[float, float] = CENTRE,
        parallel: int = 64,
        refresh_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.city = settings.cities[0].code
        rng = random.Random(7)
        self.positions = {
            f"{prefix}-{i:04d}": near(rng, centre, PICKUP_SPREAD_M) for i in range(drivers)
        }
        self.redis: Redis = create_redis(settings, "crew")
        self.svc: Services = build_services(settings, self.redis)
        self.gate = asyncio.Semaphore(parallel)
        self.refresh_s = refresh_s
        self.stats = CrewStats()
        self.trips: set[asyncio.Task[None]] = set()

    async def seed(self) -> None:
        """Register every driver, place them and take them online."""
        for driver_id in self.positions:
            body = DriverCreate(id=driver_id, name=f"Driver {driver_id}", rating=4.6, vehicle="KA")
            await self.svc.drivers.create(body)
        await self._report_positions()
        for driver_id in self.positions:
            await self.svc.drivers.set_status(driver_id, "online")

    async def _report_positions(self) -> None:
        done = await self.svc.drivers.record(
            [DriverLocation(driver_id=d, lat=p[0], lng=p[1]) for d, p in self.positions.items()]
        )
        if done.rejected:
            raise RuntimeError(f"positions refused: {done.rejected[0]}")

    async def run(self, stop: asyncio.Event) -> CrewStats:
        """Answer offers until `stop` is set and every trip under way has ended."""
        refresher = asyncio.create_task(self._refresh(stop))
        last = "0-0"
        stream = keys.city_events(self.city)
        try:
            while not stop.is_set():
                try:
                    reply = cast(
                        list[tuple[str, list[tuple[str, dict[str, str]]]]],
                        await self.redis.xread({stream: last}, count=500, block=READ_BLOCK_MS),
                    )
                except UNAVAILABLE:
                    self.stats.unavailable += 1
                    await asyncio.sleep(0.1)
                    continue
                for _name, entries in reply or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        self._on_event(fields)
            if self.trips:
                await asyncio.wait(self.trips, timeout=RETRY_FOR_S)
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            for trip in self.trips:
                trip.cancel()
            await self.redis.aclose()
        return self.stats

    def _on_event(self, fields: dict[str, str]) -> None:
        if fields.get("status") != "OFFERED" or fields.get("driver") not in self.positions:
            return
        self.stats.offers += 1
        task = asyncio.create_task(self._trip(fields["driver"], fields["offer"], fields["order"]))
        self.trips.add(task)
        task.add_done_callback(self.trips.discard)

    async def _trip(self, driver_id: str, offer_id: str, order_id: str) -> None:
        """Drive one offered order to its end, from whatever state it is found in: a step
        whose reply was lost with Redis (it may have run) is read back, not blindly repeated."""
        async with self.gate:
            deadline = time.monotonic() + RETRY_FOR_S
            while time.monotonic() < deadline:
                try:
                    h = await self.redis.hmget(
                        keys.order(self.city, order_id), ["status", "driver", "offer"]
                    )
                    status, holder, offer = cast(list[str | None], h)
                    if holder != driver_id or status in FINAL or status is None:
                        return
                    if status == "OFFERED":
                        if offer != offer_id:
                            return
                        await self._accept(driver_id, offer_id)
                    elif status in NEXT_STEP:
                        await self.svc.orders.step(order_id, "ride", NEXT_STEP[status], driver_id)
                        if status == "PICKED_UP":
                            self.stats.completed += 1
                            return
                    else:
                        return
                except RideflowError as exc:
                    self.stats.refused[exc.title] += 1
                    await asyncio.sleep(0.01)  # read the order again: someone else moved it
                except UNAVAILABLE:
                    self.stats.unavailable += 1
                    await asyncio.sleep(0.1)
            self.stats.given_up += 1

    async def _accept(self, driver_id: str, offer_id: str) -> None:
        token = await self.redis.hget(keys.offer(self.city, offer_id), "token")
        if token is None:
            raise RideflowError(f"offer {offer_id} is gone")
        await self.svc.offers.answer(offer_id, "accept", driver_id, int(token))
        self.stats.accepted += 1

    async def _refresh(self, stop: asyncio.Event) -> None:
        """Positions again every `refresh_s`, so that no driver goes stale in a long run."""
        while not stop.is_set():
            await asyncio.sleep(self.refresh_s)
            with contextlib.suppress(RedisError, OSError):
                await self._report_positions()


async def order_statuses(redis: Redis, city: str, order_ids: Sequence[str]) -> list[str | None]:
    """Each order's status in Redis (None: no such order), in pipelined batches."""
    out: list[str | None] = []
    for start in range(0, len(order_ids), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for order_id in order_ids[start : start + 1000]:
                pipe.hget(keys.order(city, order_id), "status")
            out += cast(list[str | None], await pipe.execute())
    return out


def unsettled(statuses: Sequence[str | None]) -> int:
    """Orders present and not yet in a final state."""
    return sum(1 for s in statuses if s is not None and s not in FINAL)
