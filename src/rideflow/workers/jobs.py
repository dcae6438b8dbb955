"""The job worker process (`rideflow jobs`): reads the three priority queues through a consumer
group, starts jobs in batches, runs them concurrently with a timeout each, and records outcomes in
batches.

At-least-once and never completed twice: each start hands the job a fencing token (its attempt
number) and only the holder of the current token can record an outcome. While a job runs, its
claim on the stream entry is renewed, so no other worker takes it over; a worker that dies stops
renewing, and after `job_claim_idle_ms` another takes the entry over (`XAUTOCLAIM`) and runs the job
again under a new token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from rideflow.config import Settings
from rideflow.jobs import tasks as _builtin_tasks  # noqa: F401  (registers the built-in tasks)
from rideflow.jobs.registry import REGISTRY, JobContext, Registry
from rideflow.jobs.store import RECENT_KEPT, purge
from rideflow.process import freeze_startup_objects
from rideflow.redis import keys
from rideflow.redis.connections import create_redis
from rideflow.redis.scripts import Scripts
from rideflow.redis.streams import trim_acknowledged

log = logging.getLogger("rideflow.jobs")

QUEUES = [keys.job_queue(p) for p in keys.PRIORITIES]
READ_BATCH = 100
FINISH_BATCH = 200
PROMOTE_EVERY_S = 0.02
HOUSEKEEPING_S = 5.0
PURGE_EVERY = 12
ERROR_PAUSE_S = 0.5
STOP_WAIT_S = 10.0


@dataclass(slots=True)
class Running:
    """A started attempt."""

    job_id: str
    token: int
    task: str
    payload: str
    timeout: float
    queue: int  # 1..3, as the finish script numbers the queues
    entry: str


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Running
    ok: bool
    text: str
    run_us: int


class JobWorker:
    """One worker process: `concurrency` jobs at once."""

    def __init__(
        self,
        settings: Settings,
        concurrency: int | None = None,
        *,
        burst: bool = False,
        registry: Registry = REGISTRY,
    ) -> None:
        self.settings, self.burst, self.registry = settings, burst, registry
        self.concurrency = concurrency or settings.job_concurrency
        self.name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.redis: Redis = create_redis(settings, "jobs", socket_timeout=10)
        self.scripts = Scripts.register(self.redis)
        self.counts: Counter[str] = Counter()
        # Started attempts not yet recorded, by (queue, entry id): their claims are renewed, also
        # while they wait for a slot. The queues may hand out the same entry id.
        self.running: dict[tuple[int, str], Running] = {}
        self.room = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(self.concurrency)  # handlers executing at once
        self.outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()  # None: stop

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        """Work until `stop` is set (or, in burst mode, until there is nothing left to do), then
        let running jobs finish within the grace period; the rest are left for other workers."""
        freeze_startup_objects()
        self.registry.load(self.settings.job_modules)
        await self._ensure_groups()
        loops = [
            asyncio.create_task(self._guarded(loop))
            for loop in (self._renew, self._promote, self._housekeeping)
        ]
        finisher = asyncio.create_task(self._guarded(self._finish))
        reader = asyncio.create_task(self._guarded(self._read))
        reclaimer = asyncio.create_task(self._guarded(self._reclaim))
        log.info(
            "job worker %s: %d at once, tasks %s", self.name, self.concurrency, self.registry.names
        )
        done_reading = asyncio.create_task(stop.wait())
        await asyncio.wait([reader, done_reading], return_when=asyncio.FIRST_COMPLETED)
        # Take nothing more (new entries or other workers' entries), then let running jobs end.
        for task in (reader, reclaimer, done_reading):
            task.cancel()
        await asyncio.wait([reader, reclaimer], timeout=STOP_WAIT_S)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.settings.job_grace_s)
        for task in self.tasks:
            task.cancel()  # left unacknowledged: reclaimed by another worker
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=STOP_WAIT_S)
        # The finisher records what is left, then stops at the sentinel (a cancel could be
        # swallowed by a Redis call in flight).
        await self.outcomes.put(None)
        await asyncio.wait([finisher], timeout=STOP_WAIT_S)
        for task in (finisher, *loops):
            task.cancel()
        await asyncio.wait([finisher, *loops], timeout=STOP_WAIT_S)
        await self.redis.aclose()
        summary = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing done"
        log.info("job worker %s stopped: %s", self.name, summary)
        return self.counts

    async def _guarded(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop; Redis trouble pauses it instead of ending the process."""
        while True:
            try:
                await loop()
                return
            except RedisError as exc:
                self.counts["redis_errors"] += 1
                log.warning("%s: %s; retrying", loop.__name__, exc)
                await asyncio.sleep(ERROR_PAUSE_S)
                with contextlib.suppress(RedisError):
                    await self._ensure_groups()
            except Exception:
                self.counts["errors"] += 1
                log.exception("%s failed; restarting it", loop.__name__)
                await asyncio.sleep(ERROR_PAUSE_S)

    async def _ensure_groups(self) -> None:
        for queue in QUEUES:
            try:
                await self.redis.xgroup_create(queue, keys.JOBS_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _read(self) -> None:
        """Take new entries, high priority first, as slots free up; in burst mode return when
        nothing is left."""
        while True:
            free = await self._free_slots()
            entries: list[tuple[int, str, str]] = []
            for i, queue in enumerate(QUEUES, start=1):
                if len(entries) >= free:
                    break
                entries += await self._xread({queue: ">"}, free - len(entries), None, i)
            if not entries:
                if self.burst and await self._idle():
                    # A promotion may have queued a job since the reads above: look once more.
                    entries = await self._xread({q: ">" for q in QUEUES}, free, None, 0)
                    if not entries:
                        return
                    await self._start(entries, reclaimed=False)
                    continue
                block = 200 if self.burst else 1000
                entries = await self._xread({q: ">" for q in QUEUES}, free, block, 0)
            if entries:
                await self._start(entries, reclaimed=False)

    async def _free_slots(self) -> int:
        """Wait until fewer than `concurrency` attempts are in hand; how many more fit."""
        while len(self.running) >= self.concurrency:
            self.room.clear()
            await self.room.wait()
        return max(1, min(READ_BATCH, self.concurrency - len(self.running)))

    async def _xread(
        self, streams: dict[Any, Any], count: int, block: int | None, queue_no: int
    ) -> list[tuple[int, str, str]]:
        try:
            reply = await self.redis.xreadgroup(
                keys.JOBS_GROUP, self.name, streams, count=count, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_groups()
            return []
        out = []
        for stream, entries in cast(
            list[tuple[str, list[tuple[str, dict[str, str]]]]], reply or []
        ):
            number = queue_no or QUEUES.index(stream) + 1
            out += [(number, entry_id, fields.get("job", "")) for entry_id, fields in entries]
        return out

    async def _idle(self) -> bool:
        """Nothing running here, nothing delayed, nothing pending anywhere (burst mode)."""
        if self.running or not self.outcomes.empty():
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.jobs_delayed())
            for queue in QUEUES:
                pipe.xpending(queue, keys.JOBS_GROUP)
            delayed, *pending = await pipe.execute()
        return delayed == 0 and all(p["pending"] == 0 for p in pending)

    async def _start(self, entries: list[tuple[int, str, str]], reclaimed: bool) -> None:
        """Start a batch in one step and run each started job in its own task."""
        args: list[str | int] = [
            keys.JOBS_GROUP,
            self.name,
            self.settings.job_max_lost,
            self.settings.job_result_ttl_s,
        ]
        job_keys = []
        for queue_no, entry_id, job_id in entries:
            args += [queue_no, entry_id, "1" if reclaimed else "0"]
            job_keys += [keys.job(job_id or "-"), keys.job_attempts(job_id or "-")]
        started = await self.scripts.job_start(
            keys=[
                *QUEUES,
                keys.jobs_dead(),
                keys.jobs_index("pending"),
                keys.jobs_index("processing"),
                keys.jobs_index("failed"),
                *job_keys,
            ],
            args=args,
        )
        now_ms = time.time() * 1000
        for job_id, token, task, payload, timeout, _created, run_at, entry, queue in started:
            job = Running(job_id, int(token), task, payload, float(timeout), int(queue), entry)
            self.counts["started"] += 1
            self.counts["wait_ms_total"] += max(0, int(now_ms - float(run_at)))
            self.running[(job.queue, entry)] = job
            task_ = asyncio.create_task(self._run(job))
            self.tasks.add(task_)
            task_.add_done_callback(self.tasks.discard)

    async def _run(self, job: Running) -> None:
        ok, text = True, ""
        try:
            async with self.slots:
                started = time.perf_counter()
                try:
                    task = self.registry.get(job.task)
                    payload = task.payload.model_validate_json(job.payload)
                    ctx = JobContext(
                        job.job_id, job.token, self.redis, self.scripts, self.settings, log
                    )
                    result: Any = await asyncio.wait_for(task.handler(payload, ctx), job.timeout)
                    text = orjson.dumps(result, default=str).decode()
                except TimeoutError:
                    ok, text = False, f"timed out after {job.timeout:g} s"
                except Exception as exc:
                    ok, text = False, f"{type(exc).__name__}: {exc}"[:2000]
                run_us = int((time.perf_counter() - started) * 1_000_000)
        except asyncio.CancelledError:
            self._release(job)
            raise  # shutting down: left for another worker to reclaim
        await self.outcomes.put(Outcome(job, ok, text, run_us))

    async def _finish(self) -> None:
        """Record outcomes in batches: wait for one, take whatever else is ready; return at the
        stop sentinel, after recording what came before it."""
        while True:
            first = await self.outcomes.get()
            batch = [] if first is None else [first]
            stopping = first is None
            while not stopping and len(batch) < FINISH_BATCH and not self.outcomes.empty():
                item = self.outcomes.get_nowait()
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            if batch:
                await self._record(batch)
            if stopping:
                return

    async def _record(self, batch: list[Outcome]) -> None:
        script_keys = [
            *QUEUES,
            keys.jobs_delayed(),
            keys.jobs_dead(),
            keys.jobs_index("processing"),
            keys.jobs_index("completed"),
            keys.jobs_index("failed"),
            keys.jobs_index("pending"),
        ]
        args: list[str | int | float] = [
            keys.JOBS_GROUP,
            self.settings.job_result_ttl_s,
            self.settings.job_retry_base_ms,
            self.settings.job_retry_max_ms,
            RECENT_KEPT,
        ]
        for o in batch:
            j = o.job
            script_keys += [
                keys.job(j.job_id),
                keys.job_attempts(j.job_id),
                keys.job_stats(j.task),
                keys.job_recent(j.task),
            ]
            outcome = "ok" if o.ok else ("timeout" if o.text.startswith("timed out") else "error")
            args += [j.job_id, j.token, j.queue, outcome, o.text, o.run_us, random.random()]
        try:
            statuses = await self.scripts.job_finish(keys=script_keys, args=args)
        except RedisError:
            # Not recorded: the entries stay pending and the jobs are reclaimed and run again.
            for o in batch:
                self._release(o.job)
            raise
        for o, status in zip(batch, statuses, strict=True):
            self.counts[status] += 1
            if status == "stale":
                log.warning(
                    "job %s: attempt %d was taken over; result dropped", o.job.job_id, o.job.token
                )
            self._release(o.job)

    def _release(self, job: Running) -> None:
        """Forget an attempt once recorded (only that attempt: the same entry may have been
        started again since, under a newer token)."""
        if self.running.get((job.queue, job.entry)) is job:
            del self.running[(job.queue, job.entry)]
        self.room.set()

    async def _reclaim(self) -> None:
        """Take over entries whose worker stopped renewing its claim."""
        interval = max(0.05, self.settings.job_claim_idle_ms / 4000)
        while True:
            await asyncio.sleep(interval)
            for queue_no, queue in enumerate(QUEUES, start=1):
                start = "0-0"
                while True:
                    start, entries, *_ = await self.redis.xautoclaim(
                        queue,
                        keys.JOBS_GROUP,
                        self.name,
                        min_idle_time=self.settings.job_claim_idle_ms,
                        start_id=start,
                        count=READ_BATCH,
                    )
                    found = [(queue_no, e, f.get("job", "")) for e, f in entries if f]
                    if found:
                        self.counts["reclaimed"] += len(found)
                        await self._start(found, reclaimed=True)
                    if start == "0-0":
                        break

    async def _renew(self) -> None:
        """Keep the claims of running jobs fresh (XCLAIM to ourselves resets their idle time)."""
        interval = max(0.02, self.settings.job_claim_idle_ms / 3000)
        while True:
            await asyncio.sleep(interval)
            by_queue: dict[int, list[str | bytes | int | memoryview[int]]] = {}
            for job in list(self.running.values()):
                by_queue.setdefault(job.queue, []).append(job.entry)
            for queue_no, entries in by_queue.items():
                await self.redis.xclaim(
                    QUEUES[queue_no - 1],
                    keys.JOBS_GROUP,
                    self.name,
                    min_idle_time=0,
                    message_ids=entries,
                    justid=True,
                )

    async def _promote(self) -> None:
        """Move delayed jobs and retries whose time has come onto their queues."""
        while True:
            moved = await self.scripts.job_promote(
                keys=[keys.jobs_delayed(), *QUEUES], args=[READ_BATCH]
            )
            if moved < READ_BATCH:
                await asyncio.sleep(PROMOTE_EVERY_S)

    async def _housekeeping(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            for queue in QUEUES:
                self.counts["trimmed"] += await trim_acknowledged(
                    self.redis, queue, keys.JOBS_GROUP
                )
            if tick % PURGE_EVERY == 0:
                await purge(self.redis, self.settings)
            tick += 1
