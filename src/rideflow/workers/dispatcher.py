"""The dispatcher process: a handler on the stream runner that reads each city's request stream
and matches orders with `concurrency` workers, and sweeps the city's offer deadlines.

At-least-once: an entry is acknowledged by the same Lua step that settles its order, entries a dead
process held are reclaimed by the runner once idle, and orders waiting for a driver sit in a retry
set under a lease, so nothing a crashed dispatcher held is lost. Offer deadlines live in a sorted
set that every dispatcher sweeps; a lapsed offer sends its order back onto the request stream.

Orders of strategy `batch` are collected per city for the batch window (or until
`batch_trigger_orders` wait) and then assigned together (`rideflow.dispatch.batching`). A
collected order is SEARCHING and its entry stays unacknowledged (its claim renewed, as for work
in hand) until the step that offers it or schedules its retry: a dispatcher killed with orders
collected leaves them to be reclaimed like any other entry, and a retried order's lease in the
retry set runs out the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from rideflow.config import Settings
from rideflow.dispatch.batching import BatchMatcher, Waiting
from rideflow.dispatch.offers import Answer
from rideflow.dispatch.service import Outcome
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
        self.batcher = BatchMatcher(self.dispatcher, settings)
        # Per city: the orders collected for its next batch, by order id; set when the batch
        # should not wait for its window any longer; held while a batch is solved.
        self.waiting: dict[str, dict[str, Waiting]] = {c: {} for c in cities}
        self.full = {c: asyncio.Event() for c in cities}
        self.solving = {c: asyncio.Lock() for c in cities}

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        """Work until `stop` is set (or idle, in burst mode), then finish queued orders within
        the grace period."""
        return await self.runner.run(stop)

    async def start(self, runner: Runner) -> None:
        for city in self.cities:
            for loop in (self._retries, self._sweep, self._housekeeping, self._batches):
                runner.spawn(_bound(loop, city), f"{loop.__name__}:{city}")
        log.info(
            "dispatcher %s: cities %s, %d workers", self.consumer, self.cities, self.concurrency
        )

    async def handle(self, batch: list[Entry]) -> None:
        for entry in batch:
            order_id = keys.order_in(entry.fields)
            if not order_id:
                raise Poison("stream entry names no order")
            city = self.city_of[entry.stream]
            begun = await self.dispatcher.begin(city, order_id, entry.id)
            if begun.status != "SEARCHING":
                self.counts[begun.status] += 1
                continue
            waiting = self.waiting[city]
            if begun.strategy == "batch":
                if order_id not in waiting:
                    waiting[order_id] = Waiting(order_id, entry.id, begun)
                    if len(waiting) >= self.settings.batch_trigger_orders:
                        self.full[city].set()
                    continue
                if not entry.id:
                    continue  # its retry lease ran out while collected: the batch settles it
            # Greedy, and the rare second stream entry of an order already collected: that one
            # is settled (and its entry acknowledged) by whichever step comes first.
            outcome = await self.dispatcher.search(city, order_id, entry.id, begun)
            self.counted(order_id, outcome)

    def counted(self, order_id: str, outcome: Outcome, how: str = "assigned") -> None:
        """Count an outcome and log an offer."""
        self.counts[outcome.status] += 1
        if outcome.driver is not None:
            log.info(
                "Worker %d → Driver %s %s (order %s, %.0f m, offered)",
                WORKER.get(),
                outcome.driver.driver_id,
                how,
                order_id,
                outcome.driver.distance_m,
            )

    def holding(self) -> Iterable[tuple[str, str]]:
        """Collected orders' entries: their claims are renewed until their batch settles them."""
        for city, waiting in self.waiting.items():
            stream = keys.requests(city)
            for w in waiting.values():
                if w.entry_id:
                    yield stream, w.entry_id

    async def _batches(self, city: str) -> None:
        """Solve the city's batch when its oldest order has waited the window, or as soon as
        `batch_trigger_orders` wait."""
        window = self.settings.batch_window_s
        waiting, full = self.waiting[city], self.full[city]
        while self.runner.live:
            if waiting:
                oldest = min(w.since for w in waiting.values())
                left = oldest + window - time.monotonic()
            else:
                left = window
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await full.wait()
                if not full.is_set() and not (
                    waiting and min(w.since for w in waiting.values()) + window <= time.monotonic()
                ):
                    continue
            await self.solve(city)

    async def solve(self, city: str) -> None:
        """Assign every order collected for the city now, in one batch."""
        async with self.solving[city]:
            self.full[city].clear()
            waiting = self.waiting[city]
            if not waiting:
                return
            orders = list(waiting.values())
            try:
                solved = await self.batcher.run(city, orders)
            finally:
                # Settled by the batch, or (on an error) left to be reclaimed: an unsettled
                # entry is redelivered after the claim timeout, a retried order's lease lapses.
                for w in orders:
                    if waiting.get(w.order_id) is w:
                        del waiting[w.order_id]
            self.counts["batches"] += 1
            self.counts["batch_placed"] += solved.placed
            self.counts["batch_greedy"] += solved.greedy
            for w, outcome in solved.outcomes:
                self.counted(w.order_id, outcome, "assigned by batch")
            log.info(
                "batch of %d orders in %s: %d placed, %d greedy, solved in %s ms",
                len(orders),
                city,
                solved.placed,
                solved.greedy,
                ", ".join(f"{ms:.1f}" for ms in solved.solves_ms),
            )

    async def drain(self) -> None:
        """Stopping: solve what is collected now rather than leave it to the claim timeout."""
        for city in self.cities:
            try:
                async with asyncio.timeout(self.grace_s):
                    await self.solve(city)
            except (TimeoutError, RedisError) as exc:
                log.warning("batch of %s left to be reclaimed: %r", city, exc)

    async def idle(self) -> bool:
        if any(self.waiting.values()) or any(lock.locked() for lock in self.solving.values()):
            return False
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
