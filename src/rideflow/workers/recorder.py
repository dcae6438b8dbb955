"""The recorder process (`rideflow recorder`): a handler on the stream runner that projects every
city's event stream, the request log and the finished jobs into the record (SQL), and samples
drivers' positions into it.

Nothing is lost: the event streams are trimmed only below the recorder group's oldest
unacknowledged entry, a batch is one transaction, idempotent by stream entry id, and its entries
are acknowledged only after it committed. While SQL is down the recorder retries the same batch
(backing off up to `MAX_BACKOFF_S`) with its claims renewed, and catches up after; the API and
the dispatchers never wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.metrics import families as metrics
from rideflow.metrics.streams import sample_streams
from rideflow.record import projection
from rideflow.record.backlog import backlog, recorder_streams
from rideflow.record.db import Record, database_outage
from rideflow.redis import keys
from rideflow.redis.connections import create_redis
from rideflow.redis.streams import Entry
from rideflow.workers.runner import READ_BLOCK_MS, Handler, Runner

log = logging.getLogger("rideflow.recorder")

FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 5.0
BACKLOG_EVERY_S = 5.0
DRIVER_FIELDS = ("name", "vehicle", "rating", "status", "lat", "lng")


class Recorder(Handler):
    """One recorder: one worker committing one batch at a time (the streams' order is the
    order of the transactions), a driver sampler and a backlog watch."""

    def __init__(
        self,
        settings: Settings,
        cities: Sequence[str] | None = None,
        *,
        burst: bool = False,
        record: Record | None = None,
        sample: bool = True,
    ) -> None:
        codes = list(cities or [c.code for c in settings.cities])
        super().__init__(
            name="recorder",
            group=keys.RECORDER_GROUP,
            streams=recorder_streams(settings, codes),
            claim_idle_ms=settings.claim_idle_ms,
            batch=settings.recorder_batch,
        )
        self.settings, self.cities = settings, codes
        self.city_of = {keys.city_events(c): c for c in codes}
        self.redis: Redis = create_redis(
            settings, "recorder", socket_timeout=READ_BLOCK_MS / 1000 + 5
        )
        self.record = record or Record(settings)
        self.runner = Runner(self.redis, self, burst=burst)
        self.migrated = not settings.database_auto_migrate
        self.sampled: dict[str, float] = {}  # city -> the last seen time (ms) recorded
        self.backlog = 0
        self.sampling = sample  # off in all but one of several recorders (`rideflow up`)

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        try:
            return await self.runner.run(stop)
        finally:
            await self.record.dispose()

    async def start(self, runner: Runner) -> None:
        if self.sampling:
            runner.spawn(self._sample)
        runner.spawn(self._watch_backlog)
        runner.spawn(self._sample_streams)
        log.info(
            "recorder %s: %d streams into %s (batches of up to %d)",
            runner.consumer,
            len(self.streams),
            self.record.url.split("://", 1)[0],
            self.batch,
        )

    async def handle(self, batch: list[Entry]) -> None:
        """Commit the batch, retrying it while SQL is unavailable, then acknowledge it."""
        delay = FIRST_BACKOFF_S
        while True:
            try:
                await self._migrate()
                await self.commit(batch)
                break
            except Exception as exc:
                if not database_outage(exc) or not self.runner.working:
                    raise
                metrics.sql_error(exc)
                self.counts["sql_retries"] += 1
                log.warning("recorder: SQL unavailable (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(MAX_BACKOFF_S, delay * 2)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in {e.stream for e in batch}:
                pipe.xack(stream, self.group, *[e.id for e in batch if e.stream == stream])
            await pipe.execute()

    async def _migrate(self) -> None:
        if not self.migrated:
            await self.record.migrate()
            self.migrated = True

    async def commit(self, batch: list[Entry]) -> Counter[str]:
        """Record `batch` in one transaction (entries already recorded are skipped)."""
        events: list[projection.Event] = []
        requests: list[dict[str, Any]] = []
        jobs: list[dict[str, Any]] = []
        for e in batch:
            if e.stream in self.city_of:
                events.append(projection.Event(self.city_of[e.stream], e.id, e.fields))
            elif e.stream == keys.request_log():
                requests.append(projection.request_row(e.id, e.fields))
            elif e.fields.get("id"):
                jobs.append(projection.job_row(e.fields))
        async with self.record.writer.begin() as conn:
            counts = await projection.project_events(conn, events)
            counts["requests"] += await projection.project_requests(conn, requests)
            counts["jobs"] += await projection.project_jobs(conn, jobs)
        if batch:
            oldest_ms = min(int(e.id.partition("-")[0]) for e in batch)  # entry ids: Redis ms
            metrics.RECORDER_LAG_SECONDS.observe(max(0.0, time.time() - oldest_ms / 1000))
        self.counts.update(counts)
        self.counts["batches"] += 1
        return counts

    async def _sample(self) -> None:
        """Every `track_sample_s`: drivers seen since the last sample, upserted with one track
        row each (a sample that failed is taken again next time, from the same point)."""
        while self.runner.live:
            await asyncio.sleep(self.settings.track_sample_s)
            for city in self.cities:
                try:
                    await self.sample(city)
                except Exception as exc:
                    if not database_outage(exc):
                        raise
                    metrics.sql_error(exc)
                    log.warning("recorder: driver sample of %s not recorded: %s", city, exc)

    async def sample(self, city: str) -> int:
        """Record the drivers of `city` seen since the last sample; how many."""
        since = self.sampled.get(city, 0.0)
        seen = cast(
            list[tuple[str, float]],
            await self.redis.zrangebyscore(keys.seen(city), f"({since}", "+inf", withscores=True),
        )
        if not seen:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for driver_id, _ in seen:
                pipe.hmget(keys.driver(city, driver_id), list(DRIVER_FIELDS))
            hashes = await pipe.execute()
        now_us = int(time.time() * 1_000_000)
        drivers, tracks = [], []
        for (driver_id, score), values in zip(seen, hashes, strict=True):
            h = dict(zip(DRIVER_FIELDS, values, strict=True))
            at_us = int(score) * 1000
            lat, lng = projection.to_float(h["lat"]), projection.to_float(h["lng"])
            drivers.append(
                {
                    "city": city,
                    "id": driver_id,
                    "name": h["name"],
                    "vehicle": h["vehicle"],
                    "rating": projection.to_float(h["rating"]),
                    "status": h["status"],
                    "lat": lat,
                    "lng": lng,
                    "seen_us": at_us,
                    "updated_us": now_us,
                }
            )
            if lat is not None and lng is not None:
                tracks.append(
                    {"city": city, "driver_id": driver_id, "at_us": at_us, "lat": lat, "lng": lng}
                )
        await self._migrate()
        async with self.record.writer.begin() as conn:
            await projection.record_drivers(conn, drivers, tracks)
        self.sampled[city] = max(score for _, score in seen)
        self.counts["driver_samples"] += len(tracks)
        return len(drivers)

    async def _sample_streams(self) -> None:
        """Stream lengths and group backlogs for /metrics (this process reads every stream)."""
        await sample_streams(self.redis, self.settings, lambda: self.runner.live)

    async def _watch_backlog(self) -> None:
        warned = False
        while self.runner.live:
            self.backlog = await backlog(self.redis, self.streams)
            metrics.RECORDER_BACKLOG.set(self.backlog)
            over = self.backlog > self.settings.recorder_backlog_warn
            if over and not warned:
                log.warning(
                    "recorder: %d entries not recorded yet (warning past %d)",
                    self.backlog,
                    self.settings.recorder_backlog_warn,
                )
            warned = over
            await asyncio.sleep(BACKLOG_EVERY_S)
