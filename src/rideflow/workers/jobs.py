"""The job worker process (`rideflow jobs`): a handler on the stream runner that reads the three
priority queues, starts jobs in batches, runs them concurrently with a timeout each, and records
outcomes in batches.

At-least-once and never completed twice: each start hands the job a fencing token (its attempt
number) and only the holder of the current token can record an outcome. While a job runs, the
runner renews its claim on the stream entry, so no other worker takes it over; a worker that dies
stops renewing, and after `job_claim_idle_ms` another takes the entry over (`XAUTOCLAIM`) and runs
the job again under a new token.

A job's first delivery carries the job (job_submit writes it so), and the worker runs it at once,
recording the start behind it (`job_begin.lua`); a cancel cannot take back an entry a worker
holds, and a run whose start is refused is stopped and records nothing. Entries that name their
job only (delayed jobs and retries) and entries delivered before (reclaimed) are started first
(`job_start.lua`), which also fails a job that lost its worker too often.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rideflow.config import Settings
from rideflow.jobs import tasks as _builtin_tasks  # noqa: F401  (registers the built-in tasks)
from rideflow.jobs.registry import REGISTRY, JobContext, Registry
from rideflow.jobs.store import RECENT_KEPT, purge
from rideflow.metrics import families as metrics
from rideflow.redis import keys
from rideflow.redis.connections import create_redis, redis_url
from rideflow.redis.pipelined import PipelinedRedis
from rideflow.redis.scripts import Scripts
from rideflow.redis.streams import Entry
from rideflow.restaurants import tasks as _food_tasks  # noqa: F401  (registers record_food_order)
from rideflow.workers.runner import Handler, Runner

log = logging.getLogger("rideflow.jobs")

QUEUES = keys.job_queues()
READ_BATCH = 100
FINISH_BATCH = 200
PROMOTE_EVERY_S = 0.02
HOUSEKEEPING_S = 60.0
STOP_WAIT_S = 10.0

FinishStatus = Literal["completed", "pending", "failed", "stale"]
FINISH_STATUSES = frozenset(("completed", "pending", "failed", "stale"))


class Started(NamedTuple):
    """One attempt the job_start script started."""

    job_id: str
    token: int
    task: str
    payload: str
    timeout_s: float
    created_ms: int
    run_at_ms: int
    entry: str
    queue: int  # 1..3, as the scripts number the queues

    @classmethod
    def carried(cls, entry: Entry) -> Started | None:
        """The attempt a first delivery carries (job_submit's and job_redrive's entries), or
        None for an entry that names its job only (a delayed job, a retry, an old entry)."""
        f = entry.fields
        try:
            return cls(
                f["job"],
                int(f["token"]),
                f["task"],
                f["payload"],
                float(f["timeout"]),
                int(f["created"]),
                int(f["run_at"]),
                entry.id,
                QUEUES.index(entry.stream) + 1,
            )
        except (KeyError, ValueError):
            return None

    @classmethod
    def parse(cls, row: list[Any]) -> Started:
        """One row of the job_start reply."""
        job_id, token, task, payload, timeout, created, run_at, entry, queue = row
        return cls(
            str(job_id),
            int(token),
            str(task),
            str(payload),
            float(timeout),
            int(float(created)),
            int(float(run_at)),
            str(entry),
            int(queue),
        )


def parse_finished(reply: list[Any]) -> list[FinishStatus]:
    """The job_finish reply: each job's new status, or 'stale'."""
    out: list[FinishStatus] = []
    for status in reply:
        if status not in FINISH_STATUSES:
            raise ValueError(f"job_finish answered {status!r}")
        out.append(cast(FinishStatus, status))
    return out


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Started
    ok: bool
    text: str
    run_us: int


class JobWorker(Handler):
    """One worker process: `concurrency` jobs at once.

    Idle (burst mode): besides empty queues, nothing runs here, no outcome waits to be recorded
    and no job is delayed (a retry or a job scheduled for later)."""

    def __init__(
        self,
        settings: Settings,
        concurrency: int | None = None,
        *,
        burst: bool = False,
        registry: Registry = REGISTRY,
    ) -> None:
        super().__init__(
            name="job worker",
            group=keys.JOBS_GROUP,
            streams=QUEUES,
            claim_idle_ms=settings.job_claim_idle_ms,
            batch=READ_BATCH,
            prioritized=True,
            grace_s=settings.job_grace_s,
        )
        self.settings, self.burst, self.registry = settings, burst, registry
        self.concurrency = concurrency or settings.job_concurrency
        self.redis: Redis = create_redis(settings, "jobs", socket_timeout=10)
        self.scripts = Scripts.register(self.redis)
        # Starts and finishes go over one pipelined connection of their own: a call then costs a
        # write and a wake-up, not a pool checkout and redis-py's per-call work, which were most
        # of the time between reading a job and starting it.
        url = redis_url(settings)
        self.pipelined = PipelinedRedis(url, "jobs-start") if PipelinedRedis.supports(url) else None
        self.steps = Scripts.register(self.pipelined) if self.pipelined else self.scripts
        self.runner = Runner(self.redis, self, burst=burst)
        from rideflow.record.db import Record  # SQLAlchemy: imported by a worker, not the module

        self.record = Record(settings)  # connects on first use, by the tasks that write SQL
        # Started attempts not yet recorded, by (queue, entry id): their claims are renewed, also
        # while they wait for a slot. The queues may hand out the same entry id.
        self.running: dict[tuple[int, str], Started] = {}
        self.room_freed = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(self.concurrency)  # handlers executing at once
        self.outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()  # None: stop
        self.finisher: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        """Work until `stop` is set (or, in burst mode, until there is nothing left to do), then
        let running jobs finish within the grace period; the rest are left for other workers."""
        try:
            return await self.runner.run(stop)
        finally:
            await self.record.dispose()

    async def start(self, runner: Runner) -> None:
        self.registry.load(self.settings.job_modules)
        runner.spawn(self._promote)
        runner.spawn(self._housekeeping)
        self.finisher = runner.spawn(self._finish)
        log.info(
            "job worker %s: %d at once, tasks %s",
            runner.consumer,
            self.concurrency,
            self.registry.names,
        )

    async def room(self) -> int:
        """Wait until fewer than `concurrency` attempts are in hand (started here, or read and
        not yet started); how many more fit."""
        while (taken := len(self.running) + len(self.runner.in_hand)) >= self.concurrency:
            self.room_freed.clear()
            await self.room_freed.wait()
        return max(1, min(READ_BATCH, self.concurrency - taken))

    def holding(self) -> Iterable[tuple[str, str]]:
        return [(QUEUES[queue - 1], entry) for queue, entry in self.running]

    async def idle(self) -> bool:
        if self.running or not self.outcomes.empty():
            return False
        return await self.redis.zcard(keys.jobs_delayed()) == 0

    def take(self, entries: list[Entry]) -> list[Entry]:
        """First deliveries that carry their job start here, in the reader's turn; the rest
        go to `handle`."""
        carried: list[Started] = []
        rest: list[Entry] = []
        for entry in entries:
            job = None if entry.reclaimed else Started.carried(entry)
            if job is None:
                rest.append(entry)
            else:
                carried.append(job)
        if carried:
            self._begin(carried)
        return rest

    async def handle(self, batch: list[Entry]) -> None:
        """Start a batch in one step and run each started job in its own task."""
        try:
            rest = self.take(batch)  # entries the reader took are not here; others may be
            if rest:
                await self._start(rest)
        finally:
            self.room_freed.set()  # the batch is no longer in the runner's hand

    def _begin(self, jobs: list[Started]) -> None:
        """Run each job now, and record the starts (one step for the batch) while they run."""
        loop = asyncio.get_running_loop()
        begun: list[asyncio.Future[bool]] = [loop.create_future() for _ in jobs]
        runs: list[asyncio.Task[None]] = []
        # The step's task first: its write goes out just before the handlers start, so the
        # start Redis stamps is the handlers' start, not whenever the loop got round to it.
        task = asyncio.create_task(self._record_begun(jobs, runs, begun))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        runs += [self._launch(job, b) for job, b in zip(jobs, begun, strict=True)]

    async def _record_begun(
        self, jobs: list[Started], runs: list[asyncio.Task[None]], begun: list[asyncio.Future[bool]]
    ) -> None:
        """A job the step refuses (cancelled, finished, or taken over by another worker
        meanwhile) is stopped and nothing of its run is recorded: each run records its outcome
        only once the step has answered for it."""
        args: list[str | int] = [keys.JOBS_GROUP, self.runner.consumer]
        for job in jobs:
            args += [job.job_id, job.token, job.queue, job.entry]
        statuses: list[str] = []
        try:
            reply = await self.steps.job_begin(
                keys=[
                    *QUEUES,
                    keys.jobs_index("pending"),
                    keys.jobs_index("processing"),
                    *(keys.job(job.job_id) for job in jobs),
                ],
                args=args,
            )
            statuses = [str(s) for s in reply]
        except RedisError as exc:
            self.runner.troubled(exc)
        finally:
            # Without an answer (Redis trouble, or stopping) it is unknown whether the starts
            # were recorded: these runs stop, and the entries are run again once re-read (or
            # reclaimed) as delivered before.
            statuses += ["unknown"] * (len(jobs) - len(statuses))
            now_ms = time.time() * 1000
            for job, run, b, status in zip(jobs, runs, begun, statuses, strict=True):
                b.set_result(status == "started")
                if status == "started":
                    metrics.job(job.task, "started")
                    self.counts["started"] += 1
                    self.counts["wait_ms_total"] += max(0, int(now_ms - job.run_at_ms))
                else:
                    self.counts["not_begun"] += 1
                    log.info("job %s: stopped, its start was %s", job.job_id, status)
                    run.cancel()

    def _launch(
        self, job: Started, begun: asyncio.Future[bool] | None = None
    ) -> asyncio.Task[None]:
        self.running[(job.queue, job.entry)] = job
        task = asyncio.create_task(self._run(job, begun))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _start(self, batch: list[Entry]) -> None:
        args: list[str | int] = [
            keys.JOBS_GROUP,
            self.runner.consumer,
            self.settings.job_max_lost,
            self.settings.job_result_ttl_s,
            self.settings.jobs_finished_stream_cap,
        ]
        job_keys = []
        for entry in batch:
            job_id = entry.fields.get("job") or "-"
            args += [QUEUES.index(entry.stream) + 1, entry.id, "1" if entry.reclaimed else "0"]
            job_keys += [keys.job(job_id), keys.job_attempts(job_id)]
        reply = await self.steps.job_start(
            keys=[
                *QUEUES,
                keys.jobs_dead(),
                keys.jobs_index("pending"),
                keys.jobs_index("processing"),
                keys.jobs_index("failed"),
                keys.jobs_finished(),
                *job_keys,
            ],
            args=args,
        )
        now_ms = time.time() * 1000
        for job in map(Started.parse, reply):
            metrics.job(job.task, "started")
            self.counts["started"] += 1
            self.counts["wait_ms_total"] += max(0, int(now_ms - job.run_at_ms))
            self._launch(job)

    async def _run(self, job: Started, begun: asyncio.Future[bool] | None) -> None:
        ok, text = True, ""
        try:
            async with self.slots:
                started = time.perf_counter()
                try:
                    task = self.registry.get(job.task)
                    payload = task.payload.model_validate_json(job.payload)
                    ctx = JobContext(
                        job.job_id,
                        job.token,
                        self.redis,
                        self.scripts,
                        self.settings,
                        log,
                        self.record,
                    )
                    # A timeout scope, not wait_for: wait_for wraps the handler in a task of
                    # its own on 3.11, one more loop pass before every job starts.
                    async with asyncio.timeout(job.timeout_s):
                        result: Any = await task.handler(payload, ctx)
                    text = orjson.dumps(result, default=str).decode()
                except TimeoutError:
                    ok, text = False, f"timed out after {job.timeout_s:g} s"
                except Exception as exc:
                    ok, text = False, f"{type(exc).__name__}: {exc}"[:2000]
                run_us = int((time.perf_counter() - started) * 1_000_000)
            if begun is not None and not await asyncio.shield(begun):
                self._release(job)  # its start was refused: nothing of this run is recorded
                return
        except asyncio.CancelledError:
            self._release(job)
            raise  # refused, or shutting down: left for another worker to reclaim
        await self.outcomes.put(Outcome(job, ok, text, run_us))

    async def drain(self) -> None:
        """Let running jobs finish within the grace period, cancel the rest (left unacknowledged
        for other workers), and record what finished."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.grace_s)
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=STOP_WAIT_S)
        # The finisher records what is left, then stops at the sentinel (a cancel could be
        # swallowed by a Redis call in flight).
        await self.outcomes.put(None)
        if self.finisher is not None:
            await asyncio.wait([self.finisher], timeout=STOP_WAIT_S)
        if self.pipelined is not None:
            await self.pipelined.aclose()

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
            keys.jobs_finished(),
        ]
        args: list[str | int | float] = [
            keys.JOBS_GROUP,
            self.settings.job_result_ttl_s,
            self.settings.job_retry_base_ms,
            self.settings.job_retry_max_ms,
            RECENT_KEPT,
            self.settings.jobs_finished_stream_cap,
        ]
        outcomes: list[str] = []
        for o in batch:
            j = o.job
            script_keys += [
                keys.job(j.job_id),
                keys.job_attempts(j.job_id),
                keys.job_stats(j.task),
                keys.job_recent(j.task),
            ]
            outcome = "ok" if o.ok else ("timeout" if o.text.startswith("timed out") else "error")
            outcomes.append(outcome)
            args += [j.job_id, j.token, j.queue, outcome, o.text, o.run_us, random.random()]
        try:
            statuses = parse_finished(await self.steps.job_finish(keys=script_keys, args=args))
        except RedisError:
            # Not recorded: the entries stay pending and the jobs are run again (re-read once
            # Redis answers, or reclaimed by another worker).
            for o in batch:
                self._release(o.job)
            raise
        for o, outcome, status in zip(batch, outcomes, statuses, strict=True):
            metrics.job_ran(o.job.task, outcome, status, o.run_us)
            self.counts[status] += 1
            if status == "stale":
                log.warning(
                    "job %s: attempt %d was taken over; result dropped", o.job.job_id, o.job.token
                )
            self._release(o.job)

    def _release(self, job: Started) -> None:
        """Forget an attempt once recorded (only that attempt: the same entry may have been
        started again since, under a newer token)."""
        if self.running.get((job.queue, job.entry)) is job:
            del self.running[(job.queue, job.entry)]
        self.room_freed.set()

    async def _promote(self) -> None:
        """Move delayed jobs and retries whose time has come onto their queues."""
        while self.runner.live:
            moved = await self.scripts.job_promote(
                keys=[keys.jobs_delayed(), *QUEUES], args=[READ_BATCH]
            )
            if moved < READ_BATCH:
                await asyncio.sleep(PROMOTE_EVERY_S)

    async def _housekeeping(self) -> None:
        """Drop finished jobs past their retention from the indexes."""
        while self.runner.live:
            await purge(self.redis, self.settings)
            await asyncio.sleep(HOUSEKEEPING_S)
