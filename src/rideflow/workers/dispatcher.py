"""The dispatcher process: reads each city's request stream through a consumer group and matches
orders with a pool of async workers, and sweeps the city's offer deadlines.

At-least-once: an entry is acknowledged by the same Lua step that settles its order, entries a dead
process held are reclaimed with XAUTOCLAIM once idle, and orders waiting for a driver sit in a retry
set under a lease, so nothing a crashed dispatcher held is lost. Offer deadlines live in a sorted
set that every dispatcher sweeps; a lapsed offer sends its order back onto the request stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rideflow.config import Settings
from rideflow.dispatch.offers import Answer
from rideflow.process import freeze_startup_objects
from rideflow.redis import keys
from rideflow.redis.connections import create_redis
from rideflow.redis.streams import trim_acknowledged
from rideflow.services import build_services

log = logging.getLogger("rideflow.dispatcher")

READ_BLOCK_MS = 1000
HOUSEKEEPING_S = 1.0
TRIM_EVERY = 5
RETRY_POLL_S = 0.05
ERROR_PAUSE_S = 0.5
MAX_DELIVERIES = 5
SWEEP_LEASE_MS = 250
"""How long a claimed due offer is held from other sweepers: expiring a batch takes milliseconds,
and an offer a dead sweeper claimed comes due again this soon (expiring twice is harmless)."""
SWEEP_BATCH = 100


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One order to dispatch, from the stream (with its entry id) or from the retry set."""

    city: str
    order_id: str
    entry_id: str = ""


class DispatcherWorker:
    """One dispatcher process: a reader, a reclaimer, a retry poller and housekeeping per city,
    feeding `concurrency` worker tasks through a bounded in-process queue."""

    def __init__(
        self, settings: Settings, cities: list[str], concurrency: int, grace_s: float = 5.0
    ) -> None:
        self.settings, self.cities, self.concurrency, self.grace_s = (
            settings,
            cities,
            concurrency,
            grace_s,
        )
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.counts: Counter[str] = Counter()
        self.queue: asyncio.Queue[WorkItem] = asyncio.Queue(maxsize=concurrency * 2)
        self.redis: Redis = create_redis(
            settings, "dispatcher", socket_timeout=READ_BLOCK_MS / 1000 + 5
        )
        services = build_services(settings, self.redis)
        self.scripts, self.dispatcher, self.offers = (
            services.scripts,
            services.dispatcher,
            services.offers,
        )

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        """Work until `stop` is set, then finish queued rides within the grace period."""
        freeze_startup_objects()
        producers = [
            asyncio.create_task(self._guarded(loop, city), name=f"{loop.__name__}:{city}")
            for city in self.cities
            for loop in (self._read, self._reclaim, self._retries, self._sweep, self._housekeeping)
        ]
        workers = [asyncio.create_task(self._work(i)) for i in range(self.concurrency)]
        log.info(
            "dispatcher %s: cities %s, %d workers", self.consumer, self.cities, self.concurrency
        )
        await stop.wait()
        for task in producers:
            task.cancel()
        await asyncio.gather(*producers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.grace_s):
                await self.queue.join()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await self.redis.aclose()
        summary = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing done"
        log.info("dispatcher %s stopped: %s", self.consumer, summary)
        return self.counts

    async def _guarded(self, loop: Callable[[str], Awaitable[None]], city: str) -> None:
        """Run a loop forever; Redis trouble pauses it instead of ending the process."""
        while True:
            try:
                await loop(city)
            except RedisError as exc:
                self.counts["redis_errors"] += 1
                log.warning("%s(%s): %s; retrying", loop.__name__, city, exc)
                await asyncio.sleep(ERROR_PAUSE_S)
            except Exception:
                self.counts["errors"] += 1
                log.exception("%s(%s) failed; restarting it", loop.__name__, city)
                await asyncio.sleep(ERROR_PAUSE_S)

    async def _ensure_group(self, city: str) -> None:
        try:
            # From the stream's start: rides accepted before any dispatcher ran are not skipped.
            await self.redis.xgroup_create(
                keys.requests(city), keys.DISPATCH_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, city: str) -> None:
        stream = keys.requests(city)
        await self._ensure_group(city)
        while True:
            try:
                reply = await self.redis.xreadgroup(
                    keys.DISPATCH_GROUP,
                    self.consumer,
                    {stream: ">"},
                    count=self.concurrency,
                    block=READ_BLOCK_MS,
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group(city)  # Redis came back without our group
                continue
            streams = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply or [])
            for _stream, entries in streams:
                for entry_id, fields in entries:
                    await self.queue.put(self._job(city, entry_id, fields))

    @staticmethod
    def _job(city: str, entry_id: str, fields: dict[str, str]) -> WorkItem:
        return WorkItem(city, keys.order_in(fields), entry_id)

    async def _reclaim(self, city: str) -> None:
        """Take over entries another consumer has held longer than the claim timeout."""
        interval = max(0.1, self.settings.claim_idle_ms / 4000)
        while True:
            await asyncio.sleep(interval)
            start = "0-0"
            while True:
                start, entries, *_ = await self.redis.xautoclaim(
                    keys.requests(city),
                    keys.DISPATCH_GROUP,
                    self.consumer,
                    min_idle_time=self.settings.claim_idle_ms,
                    start_id=start,
                    count=100,
                )
                for entry_id, fields in entries:
                    if fields:
                        self.counts["reclaimed"] += 1
                        await self.queue.put(self._job(city, entry_id, fields))
                if start == "0-0":
                    break

    async def _retries(self, city: str) -> None:
        """Hand rides whose next search is due to the workers."""
        while True:
            due = await self.scripts.due_claim(
                keys=[keys.retries(city)], args=[self.settings.retry_lease_ms, self.concurrency]
            )
            for order_id in due:
                await self.queue.put(WorkItem(city, order_id))
            if len(due) < self.concurrency:
                await asyncio.sleep(RETRY_POLL_S)

    async def _sweep(self, city: str) -> None:
        """Let offers lapse at their deadline. Claiming a due offer pushes it a lease ahead, so
        sweepers in other processes skip it, and it comes due again if this one dies."""
        due_key = keys.offers_due(city)
        while True:
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
        """Drop stale drivers from the pool; now and then trim the stream."""
        tick = 0
        while True:
            await self.scripts.pool_prune(
                keys=[keys.pool(city), keys.seen(city)],
                args=[int(self.settings.driver_stale_s * 1000), 1000],
            )
            if tick % TRIM_EVERY == 0:
                await self._trim(city)
            tick += 1
            await asyncio.sleep(HOUSEKEEPING_S)

    async def _trim(self, city: str) -> None:
        self.counts["trimmed"] += await trim_acknowledged(
            self.redis, keys.requests(city), keys.DISPATCH_GROUP
        )

    async def _work(self, index: int) -> None:
        while True:
            item = await self.queue.get()
            try:
                if not item.order_id:
                    raise ValueError("stream entry names no order")
                outcome = await self.dispatcher.handle(item.city, item.order_id, item.entry_id)
                self.counts[outcome.status] += 1
                if outcome.driver is not None:
                    log.info(
                        "Worker %d → Driver %s assigned (order %s, %.0f m, offered)",
                        index,
                        outcome.driver.driver_id,
                        item.order_id,
                        outcome.driver.distance_m,
                    )
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Not acknowledged: the entry is reclaimed after the claim timeout.
                self.counts["redis_errors"] += 1
                log.warning("worker %d: order %s: %s", index, item.order_id, exc)
            except Exception as exc:
                self.counts["errors"] += 1
                log.exception("worker %d: order %s failed", index, item.order_id)
                with contextlib.suppress(RedisError):
                    await self._after_failure(item, exc)
            finally:
                self.queue.task_done()

    async def _after_failure(self, item: WorkItem, exc: Exception) -> None:
        """Leave a failed order for another try, unless it has failed MAX_DELIVERIES times:
        then its entry goes to the city's dead-letter stream and the order ends NO_DRIVER_FOUND
        with the error as its reason, so that it neither loops forever, nor holds back the
        stream's trimming, nor sits searching with nothing left to move it."""
        stream = keys.requests(item.city)
        if item.entry_id:
            pending = await self.redis.xpending_range(
                stream, keys.DISPATCH_GROUP, min=item.entry_id, max=item.entry_id, count=1
            )
            if not pending:
                return  # settled meanwhile, by another dispatcher
            if item.order_id and int(pending[0]["times_delivered"]) < MAX_DELIVERIES:
                return
            await self.redis.xadd(
                keys.dead_requests(item.city),
                {
                    "order": item.order_id,
                    "entry": item.entry_id,
                    "error": f"{type(exc).__name__}: {exc}"[:500],
                },
            )
        else:
            failures = await self.redis.hincrby(keys.order(item.city, item.order_id), "failures", 1)
            if failures < MAX_DELIVERIES:
                return  # its retry lease runs out and it is tried again
        reason = f"dispatch failed {MAX_DELIVERIES} times: {type(exc).__name__}: {exc}"[:300]
        try:
            await self.dispatcher.give_up(item.city, item.order_id, item.entry_id, reason)
        except ResponseError:
            if item.entry_id:  # the order itself is unreadable: at least stop redelivering it
                await self.redis.xack(stream, keys.DISPATCH_GROUP, item.entry_id)
        self.counts["dead_lettered"] += 1
        log.error(
            "order %s given up after %d failures: %s", item.order_id or "?", MAX_DELIVERIES, exc
        )
