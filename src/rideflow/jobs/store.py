"""The job store: submit, read, list, cancel, dead letters and re-drive, statistics. Every
status change is one Lua step; workers (`rideflow.workers.jobs`) make the rest."""

from __future__ import annotations

import math
import time
import uuid
from enum import StrEnum
from typing import Any, NamedTuple, cast

import orjson
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.errors import Conflict, NotFound
from rideflow.idempotency import fingerprint
from rideflow.jobs.registry import Registry
from rideflow.jobs.schemas import (
    DeadLetter,
    DeadLetters,
    JobAttempt,
    JobList,
    JobStats,
    JobStatus,
    JobSubmit,
    JobView,
    Priority,
    TaskStats,
)
from rideflow.redis import keys
from rideflow.redis.clock import from_ms, to_ms
from rideflow.redis.scripts import Scripts, Store, parse_stored

STATUSES: tuple[JobStatus, ...] = ("pending", "processing", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")
IDEMPOTENCY_TTL_S = 86_400
THROUGHPUT_WINDOW_MS = 60_000
RECENT_KEPT = 1_000
"""Latest completions kept per task for the statistics."""


class Change(StrEnum):
    """What `job_cancel.lua` or `job_redrive.lua` did."""

    OK = "OK"
    ILLEGAL = "ILLEGAL"
    """Not allowed from the job's status; detail: that status."""
    GONE = "GONE"


class Changed(NamedTuple):
    """`job_cancel.lua`'s or `job_redrive.lua`'s reply."""

    outcome: Change
    status: str = ""


def parse_changed(reply: list[Any]) -> Changed:
    """`job_cancel.lua`'s or `job_redrive.lua`'s reply, typed."""
    return Changed(Change(reply[0]), str(reply[1]) if len(reply) > 1 else "")


class Jobs:
    """One instance per process, shared by requests."""

    def __init__(
        self, redis: Redis, scripts: Scripts, settings: Settings, registry: Registry
    ) -> None:
        self.redis, self.scripts, self.settings, self.registry = redis, scripts, settings, registry

    async def submit(
        self, body: JobSubmit, idempotency_key: str | None = None, submitter: str = ""
    ) -> str:
        """Store a job and queue it (or hold it until its time); returns its id. The task and
        its payload are checked first: nothing is stored for a bad one. `submitter` is the
        caller's subject ('' for RideFlow itself); their `Idempotency-Key`s are theirs alone, so
        one caller can neither read nor squat on another's."""
        payload = self.registry.validate(body.task, body.payload)
        job_id = str(uuid.uuid4())
        run_at = 0
        if body.run_at is not None:
            run_at = to_ms(body.run_at)
        elif body.delay:
            run_at = int(time.time() * 1000 + body.delay * 1000)
        script_keys = [
            keys.job(job_id),
            keys.job_queue(body.priority),
            keys.jobs_delayed(),
            keys.jobs_index("pending"),
            keys.job_stats(body.task),
        ]
        print_ = ""
        if idempotency_key is not None:
            scoped = f"by:{submitter}:{idempotency_key}" if submitter else idempotency_key
            script_keys.append(keys.job_idempotency(scoped))
            print_ = fingerprint(body.model_dump(mode="json"))
        reply = await self.scripts.job_submit(
            keys=script_keys,
            args=[
                job_id,
                body.task,
                orjson.dumps(payload.model_dump(mode="json")).decode(),
                body.priority,
                body.max_retries,
                body.timeout or self.settings.job_timeout_s,
                run_at,
                IDEMPOTENCY_TTL_S,
                print_,
                keys.queue_number(body.priority),
                submitter,
            ],
        )
        outcome, stored = parse_stored(reply)
        if outcome is Store.CONFLICT:
            raise Conflict(
                f"Idempotency-Key {idempotency_key!r} was already used for a different request "
                f"(job {stored})"
            )
        return stored

    async def _hash(self, job_id: str) -> dict[str, str]:
        h = cast(dict[str, str], await self.redis.hgetall(keys.job(job_id)))
        if not h:
            raise NotFound(f"no job with id {job_id!r}")
        return h

    async def get(self, job_id: str) -> JobView:
        """A job with its result or last error and every finished attempt."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.job(job_id))
            pipe.lrange(keys.job_attempts(job_id), 0, -1)
            h, attempts = await pipe.execute()
        if not h:
            raise NotFound(f"no job with id {job_id!r}")
        return view(h, attempts)

    async def submitter(self, job_id: str) -> str:
        """Who submitted a job ('' for RideFlow itself, or a job older than the field)."""
        found, by = await self.redis.hmget(keys.job(job_id), ["id", "by"])
        if found is None:
            raise NotFound(f"no job with id {job_id!r}")
        return str(by or "")

    async def brief(self, job_id: str) -> dict[str, Any]:
        """What `GET /job-status/{id}` shows."""
        h = await self._hash(job_id)
        return {
            "job_id": job_id,
            "task": h["task"],
            "status": h["status"],
            "retries": int(h.get("retries", 0)),
        }

    async def cancel(self, job_id: str) -> JobView:
        """Cancel a pending job; a running or finished one is a 409."""
        h = await self._hash(job_id)
        changed = await self.scripts.job_cancel(
            keys=[
                keys.job(job_id),
                keys.jobs_delayed(),
                keys.jobs_index("pending"),
                keys.jobs_index("cancelled"),
                keys.job_attempts(job_id),
                *keys.job_queues(),
            ],
            args=[job_id, self.settings.job_result_ttl_s, keys.JOBS_GROUP],
        )
        outcome, status = parse_changed(changed)
        if outcome is Change.GONE:
            raise NotFound(f"no job with id {job_id!r}")
        if outcome is Change.ILLEGAL:
            raise Conflict(
                f"job {job_id} ({h['task']}) is {status}; only a pending job can be cancelled"
            )
        return await self.get(job_id)

    async def redrive(self, job_id: str) -> JobView:
        """Send a failed (dead) job back to its queue with its retries reset."""
        h = await self._hash(job_id)
        priority = h.get("priority", "default")
        changed = await self.scripts.job_redrive(
            keys=[
                keys.job(job_id),
                keys.job_queue(priority),
                keys.jobs_dead(),
                keys.jobs_index("failed"),
                keys.jobs_index("pending"),
                keys.job_attempts(job_id),
            ],
            args=[job_id, keys.queue_number(priority)],
        )
        outcome, status = parse_changed(changed)
        if outcome is Change.GONE:
            raise NotFound(f"no job with id {job_id!r}")
        if outcome is Change.ILLEGAL:
            raise Conflict(f"job {job_id} is {status}; only a failed job can be re-driven")
        return await self.get(job_id)

    async def list(
        self, status: JobStatus, task: str | None, limit: int, before: float | None
    ) -> JobList:
        """Jobs in a status, newest first, optionally of one task; page with `before`."""
        top = f"({before}" if before is not None else "+inf"
        jobs: list[JobView] = []
        next_before: float | None = None
        while len(jobs) < limit:
            ids = cast(
                list[tuple[str, float]],
                await self.redis.zrevrangebyscore(
                    keys.jobs_index(status), top, "-inf", start=0, num=limit * 2, withscores=True
                ),
            )
            if not ids:
                next_before = None
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, _ in ids:
                    pipe.hgetall(keys.job(job_id))
                    pipe.lrange(keys.job_attempts(job_id), 0, -1)
                replies = await pipe.execute()
            for (_job_id, score), h, attempts in zip(ids, replies[::2], replies[1::2], strict=True):
                next_before = score
                if h and h.get("status") == status and (task is None or h["task"] == task):
                    jobs.append(view(h, attempts))
                    if len(jobs) == limit:
                        break
            top = f"({next_before}"
            if len(ids) < limit * 2:
                if len(jobs) < limit:
                    next_before = None
                break
        return JobList(jobs=jobs, next_before=next_before)

    async def dead(self, limit: int) -> DeadLetters:
        """The dead letters, newest first."""
        entries = cast(
            list[tuple[str, dict[str, str]]],
            await self.redis.xrevrange(keys.jobs_dead(), count=limit),
        )
        return DeadLetters(
            dead=[
                DeadLetter(
                    entry_id=entry_id,
                    job_id=f["job"],
                    task=f.get("task", ""),
                    error=f.get("error", ""),
                    at=from_ms(f["at"]),
                )
                for entry_id, f in entries
            ]
        )

    async def stats(self) -> JobStats:
        """Counts per status, and per task: totals, throughput over the last minute, run time
        and wait (due to started) percentiles over the latest completions."""
        names = self.registry.names
        # Redis' clock, read on its own: a cluster pipeline refuses TIME (no key, no node).
        seconds, micros = await self.redis.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in STATUSES:
                pipe.zcard(keys.jobs_index(status))
            for name in names:
                pipe.hgetall(keys.job_stats(name))
                pipe.lrange(keys.job_recent(name), 0, -1)
            replies = await pipe.execute()
        counts = dict(zip(STATUSES, (int(n) for n in replies[: len(STATUSES)]), strict=True))
        now_ms = seconds * 1000 + micros // 1000
        tasks: dict[str, TaskStats] = {}
        rest = replies[len(STATUSES) :]
        for name, counters, recent in zip(names, rest[::2], rest[1::2], strict=True):
            if not counters:
                continue
            tasks[name] = task_stats(counters, recent, now_ms)
        return JobStats(counts=counts, tasks=tasks, known_tasks=names)


def task_stats(counters: dict[str, str], recent: list[str], now_ms: int) -> TaskStats:
    """One task's statistics from its counters and its latest completions (newest first)."""
    rows = [tuple(int(float(x)) for x in r.split(",")) for r in recent]
    in_window = [r for r in rows if r[0] >= now_ms - THROUGHPUT_WINDOW_MS]
    if rows and len(rows) >= RECENT_KEPT and len(in_window) == len(rows):
        # The list is capped and all of it is within the window: measure over its own span.
        throughput = len(rows) / max(now_ms - rows[-1][0], 1) * 1000
    else:
        throughput = len(in_window) / (THROUGHPUT_WINDOW_MS / 1000)
    run = sorted(r[1] / 1000 for r in rows)
    wait = sorted(r[2] / 1000 for r in rows)
    return TaskStats(
        submitted=int(counters.get("submitted", 0)),
        completed=int(counters.get("completed", 0)),
        failed=int(counters.get("failed", 0)),
        retried=int(counters.get("retried", 0)),
        throughput_per_s=round(throughput, 3),
        run_ms_p50=_pct(run, 50),
        run_ms_p99=_pct(run, 99),
        wait_ms_p50=_pct(wait, 50),
        wait_ms_p99=_pct(wait, 99),
    )


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1)], 3)


def view(h: dict[str, str], attempts: list[str]) -> JobView:
    """A job as the API shows it, from its hash and its attempts list."""
    return JobView(
        job_id=h["id"],
        task=h["task"],
        status=cast(JobStatus, h["status"]),
        priority=cast(Priority, h.get("priority", "default")),
        payload=orjson.loads(h.get("payload", "{}")),
        retries=int(h.get("retries", 0)),
        max_retries=int(h.get("max_retries", 0)),
        timeout=float(h.get("timeout", 0)),
        result=orjson.loads(h["result"]) if h.get("result") else None,
        error=h.get("error"),
        attempts=[attempt(orjson.loads(a)) for a in attempts],
        created_at=from_ms(h["created"]),
        run_at=from_ms(h["run_at"]),
        started_at=from_ms(h["started"]) if h.get("started") else None,
        finished_at=from_ms(h["finished"]) if h.get("finished") else None,
        submitted_by=h.get("by") or None,
    )


def attempt(a: dict[str, Any]) -> JobAttempt:
    return JobAttempt(
        attempt=a["attempt"],
        worker=a.get("worker"),
        started_at=from_ms(a["started"]),
        finished_at=from_ms(a["finished"]),
        outcome=a["outcome"],
        error=a.get("error"),
    )


async def purge(redis: Redis, settings: Settings) -> dict[str, int]:
    """Drop finished jobs past their retention from the status indexes (their hashes expire by
    themselves); returns how many per status."""
    seconds, micros = await redis.time()
    horizon = seconds * 1000 + micros // 1000 - settings.job_result_ttl_s * 1000
    async with redis.pipeline(transaction=False) as pipe:
        for status in FINISHED:
            pipe.zremrangebyscore(keys.jobs_index(status), "-inf", horizon)
        removed = await pipe.execute()
    return dict(zip(FINISHED, (int(n) for n in removed), strict=True))
