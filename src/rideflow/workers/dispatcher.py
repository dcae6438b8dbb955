"""The dispatcher process: a handler on the stream runner that reads each city's request stream
and matches orders with `concurrency` workers, and sweeps the city's offer deadlines.

At-least-once: an entry is acknowledged by the same Lua step that settles its order, entries a dead
process held are reclaimed by the runner once idle, and orders waiting for a driver sit in a retry
set under a lease, so nothing a crashed dispatcher held is lost. Offer deadlines live in a sorted
set that every dispatcher sweeps; a lapsed offer sends its order back onto the request stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from rideflow.config import Settings
from rideflow.dispatch.offers import Answer
from rideflow.redis import keys
from rideflow.redis.connections import create_redis
from rideflow.redis.streams import Entry
from rideflow.services import build_services
from rideflow.workers.runner import READ_BLOCK_MS, WORKER, Handler, Poison, Runner

log = logging.getLogger("rideflow.dispatcher")

HOUSEKEEPING_S = 1.0
RETRY_POLL_S = 0.05
MAX_DELIVERIES = 5
SWEEP_LEASE_MS = 120
"""How long a claimed due offer is held from other sweepers: expiring a batch takes milliseconds,
and an offer a dead sweeper claimed comes due again this soon (expiring twice is harmless). With
the other dispatcher's sweep every 50 ms, such an offer still lapses within the 250 ms target;
at 250 ms it could not (bench figure 7 saw 313 ms once)."""
SWEEP_BATCH = 50
"""Offers claimed at once: about 0.5 ms each to expire, so a batch ends well within the lease."""


class DispatcherWorker(Handler):
    """One dispatcher process: the runner reads every city's stream into `concurrency` workers;
    a retry poller, an offer sweeper and a pool pruner run per city.

    Idle (burst mode): besides empty streams, no order waits in a retry set and no offer is past
    its deadline; offers still awaiting an answer do not keep it running.
    """

    def __init__(
        self,
        settings: Settings,
        cities: list[str],
        concurrency: int,
        grace_s: float = 5.0,
        *,
        burst: bool = False,
    ) -> None:
        super().__init__(
            name="dispatcher",
            group=keys.DISPATCH_GROUP,
            streams=[keys.requests(c) for c in cities],
            claim_idle_ms=settings.claim_idle_ms,
            workers=concurrency,
            max_deliveries=MAX_DELIVERIES,
            grace_s=grace_s,
        )
        self.settings, self.cities, self.concurrency = settings, cities, concurrency
        self.city_of = {keys.requests(c): c for c in cities}
        self.redis: Redis = create_redis(
            settings, "dispatcher", socket_timeout=READ_BLOCK_MS / 1000 + 5
        )
        services = build_services(settings, self.redis)
        self.scripts, self.dispatcher, self.offers = (
            services.scripts,
            services.dispatcher,
            services.offers,
        )
        self.runner = Runner(self.redis, self, burst=burst)
        self.consumer = self.runner.consumer

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        """Work until `stop` is set (or idle, in burst mode), then finish queued orders within
        the grace period."""
        return await self.runner.run(stop)

    async def start(self, runner: Runner) -> None:
        for city in self.cities:
            for loop in (self._retries, self._sweep, self._housekeeping):
                runner.spawn(_bound(loop, city), f"{loop.__name__}:{city}")
        log.info(
            "dispatcher %s: cities %s, %d workers", self.consumer, self.cities, self.concurrency
        )

    async def handle(self, batch: list[Entry]) -> None:
        for entry in batch:
            order_id = keys.order_in(entry.fields)
            if not order_id:
                raise Poison("stream entry names no order")
            outcome = await self.dispatcher.handle(self.city_of[entry.stream], order_id, entry.id)
            self.counts[outcome.status] += 1
            if outcome.driver is not None:
                log.info(
                    "Worker %d → Driver %s assigned (order %s, %.0f m, offered)",
                    WORKER.get(),
                    outcome.driver.driver_id,
                    order_id,
                    outcome.driver.distance_m,
                )

    async def idle(self) -> bool:
        seconds, micros = await self.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        async with self.redis.pipeline(transaction=False) as pipe:
            for city in self.cities:
                pipe.zcard(keys.retries(city))
                pipe.zcount(keys.offers_due(city), "-inf", now_ms)
            counts = await pipe.execute()
        return not any(counts)

    def dead_fields(self, entry: Entry, error: str) -> dict[str, str]:
        return {"order": keys.order_in(entry.fields), "entry": entry.id, "error": error}

    def dead_stream(self, stream: str) -> str:
        return keys.dead_requests(self.city_of[stream])

    async def dead(self, entry: Entry, error: str) -> None:
        """End the order NO_DRIVER_FOUND with the error as its reason, so that it does not sit
        searching with nothing left to move it."""
        order_id = keys.order_in(entry.fields)
        if order_id:
            await self._give_up(self.city_of[entry.stream], order_id, entry.id, error)

    async def failed(self, entry: Entry, exc: Exception) -> None:
        """An order from the retry set failed: tried again when its lease runs out, until it has
        failed MAX_DELIVERIES times."""
        city, order_id = self.city_of[entry.stream], keys.order_in(entry.fields)
        failures = await self.redis.hincrby(keys.order(city, order_id), "failures", 1)
        if failures >= MAX_DELIVERIES:
            await self._give_up(city, order_id, "", f"{type(exc).__name__}: {exc}")
            self.counts["dead_lettered"] += 1

    async def _give_up(self, city: str, order_id: str, entry_id: str, error: str) -> None:
        reason = f"dispatch failed {MAX_DELIVERIES} times: {error}"[:300]
        try:
            await self.dispatcher.give_up(city, order_id, entry_id, reason)
        except ResponseError as exc:  # the order itself is unreadable; its entry is still acked
            log.error("order %s cannot be ended: %s", order_id, exc)
        else:
            log.error("order %s given up: %s", order_id, error)

    async def _retries(self, city: str) -> None:
        """Hand orders whose next search is due to the workers."""
        stream = keys.requests(city)
        while self.runner.live:
            due = await self.scripts.due_claim(
                keys=[keys.retries(city)], args=[self.settings.retry_lease_ms, self.concurrency]
            )
            for order_id in due:
                await self.runner.submit(Entry(stream, "", {"order": order_id}))
            if len(due) < self.concurrency:
                await asyncio.sleep(RETRY_POLL_S)

    async def _sweep(self, city: str) -> None:
        """Let offers lapse at their deadline. Claiming a due offer pushes it a lease ahead, so
        sweepers in other processes skip it, and it comes due again if this one dies."""
        due_key = keys.offers_due(city)
        while self.runner.live:
            due = await self.scripts.due_claim(keys=[due_key], args=[SWEEP_LEASE_MS, SWEEP_BATCH])
            for offer_id in due:
                answered = await self.offers.expire(city, offer_id)
                if answered.outcome is Answer.EXPIRED:
                    self.counts["lapsed"] += 1
                    if answered.detail == "offline":
                        log.info("offer %s lapsed; its driver went offline", offer_id)
                elif answered.outcome is Answer.REPAIRED:
                    self.counts["repaired"] += 1
                    log.warning("offer %s was lost; its order searches again", offer_id)
            if len(due) < SWEEP_BATCH:
                await asyncio.sleep(self.settings.offer_sweep_s)

    async def _housekeeping(self, city: str) -> None:
        """Drop stale drivers from the pool."""
        while self.runner.live:
            await self.scripts.pool_prune(
                keys=[keys.pool(city), keys.seen(city)],
                args=[self.settings.stale_ms, 1000],
            )
            await asyncio.sleep(HOUSEKEEPING_S)


def _bound(loop: Callable[[str], Awaitable[None]], city: str) -> Callable[[], Awaitable[None]]:
    """`loop` for one city, named after both in log lines."""

    async def bound() -> None:
        await loop(city)

    bound.__name__ = f"{loop.__name__}({city})"
    return bound
