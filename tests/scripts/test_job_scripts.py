"""The job scripts' contract around a first delivery: an entry carries its job, a worker runs it at
once and job_begin records the start behind it; a cancel takes back only an entry no worker holds;
a late begin loses to a worker that took the entry over."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rideflow.redis import keys
from rideflow.redis.scripts import Scripts

GROUP = "workers"
QUEUE = keys.job_queue("default")


async def submit(scripts: Scripts, job_id: str, *, delay_ms: int = 0) -> None:
    run_at = 0
    if delay_ms:
        run_at = 2**41  # far in the future
    reply = await scripts.job_submit(
        keys=[
            keys.job(job_id), QUEUE, keys.jobs_delayed(), keys.jobs_index("pending"),
            keys.job_stats("t"),
        ],
        args=[job_id, "t", '{"n": 1}', "default", 3, 30, run_at, 0, "", 2],
    )  # fmt: skip
    assert reply == ["CREATED", job_id]


async def read(redis: Redis, consumer: str) -> list[tuple[str, dict[str, str]]]:
    reply: Any = await redis.xreadgroup(GROUP, consumer, {QUEUE: ">"}, count=10)
    return [(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries]


async def cancel(scripts: Scripts, job_id: str) -> list[str]:
    reply: list[str] = await scripts.job_cancel(
        keys=[
            keys.job(job_id), keys.jobs_delayed(), keys.jobs_index("pending"),
            keys.jobs_index("cancelled"), keys.job_attempts(job_id), *keys.job_queues(),
        ],
        args=[job_id, 60, GROUP],
    )  # fmt: skip
    return reply


async def begin(scripts: Scripts, worker: str, *jobs: tuple[str, int | str, str]) -> list[str]:
    """job_begin for (job id, token, entry id) in the default queue."""
    args: list[str | int] = [GROUP, worker]
    for job_id, token, entry in jobs:
        args += [job_id, token, 2, entry]
    reply: list[str] = await scripts.job_begin(
        keys=[
            *keys.job_queues(), keys.jobs_index("pending"), keys.jobs_index("processing"),
            *(keys.job(j) for j, _, _ in jobs),
        ],
        args=args,
    )  # fmt: skip
    return reply


async def start_reclaimed(scripts: Scripts, worker: str, job_id: str, entry: str) -> list[Any]:
    reply: list[Any] = await scripts.job_start(
        keys=[
            *keys.job_queues(), keys.jobs_dead(), keys.jobs_index("pending"),
            keys.jobs_index("processing"), keys.jobs_index("failed"), keys.jobs_finished(),
            keys.job(job_id), keys.job_attempts(job_id),
        ],
        args=[GROUP, worker, 5, 60, 0, 2, entry, "1"],
    )  # fmt: skip
    return reply


async def finish(scripts: Scripts, job_id: str, token: int, outcome: str = "ok") -> list[str]:
    reply: list[str] = await scripts.job_finish(
        keys=[
            *keys.job_queues(), keys.jobs_delayed(), keys.jobs_dead(),
            keys.jobs_index("processing"), keys.jobs_index("completed"), keys.jobs_index("failed"),
            keys.jobs_index("pending"), keys.jobs_finished(), keys.job(job_id),
            keys.job_attempts(job_id), keys.job_stats("t"), keys.job_recent("t"),
        ],
        args=[GROUP, 60, 100, 1000, 10, 0, job_id, token, 2, outcome, '"r"', 5, 0.5],
    )  # fmt: skip
    return reply


async def pending_ids(redis: Redis) -> list[str]:
    rows = await redis.xpending_range(QUEUE, GROUP, min="-", max="+", count=100)
    return [str(r["message_id"]) for r in rows]


async def test_an_entry_carries_its_job_and_begin_records_the_start(
    redis: Redis, scripts: Scripts
) -> None:
    await redis.xgroup_create(QUEUE, GROUP, id="0", mkstream=True)
    await submit(scripts, "j1")
    [(entry, fields)] = await read(redis, "a")
    assert fields["job"] == "j1" and fields["token"] == "1" and fields["task"] == "t"
    assert fields["payload"] == '{"n": 1}' and fields["timeout"] == "30"
    h = await redis.hgetall(keys.job("j1"))
    assert h["entry"] == entry and h["queue"] == "2" and h["status"] == "pending"
    assert fields["created"] == h["created"] and fields["run_at"] == h["run_at"]

    assert await begin(scripts, "a", ("j1", 1, entry)) == ["started"]
    h = await redis.hgetall(keys.job("j1"))
    assert (h["status"], h["attempts"], h["worker"]) == ("processing", "1", "a")
    assert await redis.zscore(keys.jobs_index("processing"), "j1") is not None
    assert await redis.zscore(keys.jobs_index("pending"), "j1") is None
    assert await pending_ids(redis) == [entry]  # acknowledged by the finish, not the start
    assert await finish(scripts, "j1", 1) == ["completed"]
    assert await pending_ids(redis) == []


async def test_cancel_takes_back_an_undelivered_entry_but_not_a_delivered_one(
    redis: Redis, scripts: Scripts
) -> None:
    # No group yet (no worker ever ran): the entry is simply deleted.
    await submit(scripts, "early")
    assert await cancel(scripts, "early") == ["OK"]
    assert await redis.xlen(QUEUE) == 0

    await redis.xgroup_create(QUEUE, GROUP, id="0", mkstream=True)
    await submit(scripts, "queued")
    assert await cancel(scripts, "queued") == ["OK"]
    assert await read(redis, "a") == []  # never delivered
    assert await redis.hget(keys.job("queued"), "status") == "cancelled"

    await submit(scripts, "taken")
    [(entry, _)] = await read(redis, "a")
    # Delivered: the worker is running it, though its start is not recorded yet.
    assert await cancel(scripts, "taken") == ["ILLEGAL", "processing"]
    assert await redis.hget(keys.job("taken"), "status") == "pending"
    assert await begin(scripts, "a", ("taken", 1, entry)) == ["started"]

    # A delayed job has no entry yet: cancelled in the delayed set.
    await submit(scripts, "later", delay_ms=1)
    assert await cancel(scripts, "later") == ["OK"]
    assert await redis.zcard(keys.jobs_delayed()) == 0


async def test_begin_refuses_a_cancelled_finished_or_vanished_job_and_acknowledges_its_entry(
    redis: Redis, scripts: Scripts
) -> None:
    await redis.xgroup_create(QUEUE, GROUP, id="0", mkstream=True)
    for job_id in ("c", "g", "r"):
        await submit(scripts, job_id)
    entries = {f["job"]: e for e, f in await read(redis, "a")}
    # Made so behind the worker's back (a cancel cannot do it once delivered).
    await redis.hset(keys.job("c"), "status", "cancelled")
    await redis.delete(keys.job("g"))
    # A retry pending after another attempt: the entry's token is not its next attempt.
    await redis.hset(keys.job("r"), "attempts", 1)
    reply = await begin(scripts, "a", *((j, 1, entries[j]) for j in ("c", "g", "r")))
    assert reply == ["cancelled", "gone", "pending"]
    assert await pending_ids(redis) == []
    assert await redis.hget(keys.job("r"), "status") == "pending"


async def test_a_late_begin_loses_to_the_worker_that_took_the_entry_over(
    redis: Redis, scripts: Scripts
) -> None:
    await redis.xgroup_create(QUEUE, GROUP, id="0", mkstream=True)
    await submit(scripts, "j")
    [(entry, _)] = await read(redis, "a")
    # Worker a stalls before its start is recorded; b takes the entry over and starts the job.
    _, claimed, *_ = await redis.xautoclaim(QUEUE, GROUP, "b", min_idle_time=0, start_id="0-0")
    assert [c[0] for c in claimed] == [entry]
    [row] = await start_reclaimed(scripts, "b", "j", entry)
    assert row[0] == "j" and row[1] == 1
    assert await begin(scripts, "a", ("j", 1, entry)) == ["processing"]
    assert await pending_ids(redis) == [entry]  # still b's: not acknowledged by a's refusal
    h = await redis.hgetall(keys.job("j"))
    assert (h["status"], h["worker"], h["attempts"]) == ("processing", "b", "1")
    assert await finish(scripts, "j", 1) == ["completed"]
    assert await redis.llen(keys.job_attempts("j")) == 1


async def test_a_retry_names_its_job_and_a_redrive_carries_it(
    redis: Redis, scripts: Scripts
) -> None:
    await redis.xgroup_create(QUEUE, GROUP, id="0", mkstream=True)
    await submit(scripts, "j")
    [(entry, _)] = await read(redis, "a")
    assert await begin(scripts, "a", ("j", 1, entry)) == ["started"]
    assert await finish(scripts, "j", 1, "error") == ["pending"]
    # Waiting for its retry: no entry of its own yet, so a cancel has none to take back.
    assert await redis.hget(keys.job("j"), "entry") is None
    await redis.hset(keys.job("j"), mapping={"status": "failed", "attempts": 4})
    redrive = await scripts.job_redrive(
        keys=[
            keys.job("j"), QUEUE, keys.jobs_dead(), keys.jobs_index("failed"),
            keys.jobs_index("pending"), keys.job_attempts("j"),
        ],
        args=["j", 2],
    )  # fmt: skip
    assert redrive == ["OK"]
    [(again, fields)] = await read(redis, "a")
    assert fields["token"] == "5" and fields["payload"] == '{"n": 1}'
    assert await redis.hget(keys.job("j"), "entry") == again
    assert await begin(scripts, "a", ("j", 5, again)) == ["started"]


async def test_submit_keeps_the_submitter_and_none_for_the_system(
    redis: Redis, scripts: Scripts
) -> None:
    base = [keys.jobs_delayed(), keys.jobs_index("pending"), keys.job_stats("t")]
    for job_id, by in (("j-by", "alice"), ("j-sys", None)):
        args: list[str | int] = [job_id, "t", "{}", "default", 3, 30, 0, 0, "", 2]
        if by is not None:
            args.append(by)
        reply = await scripts.job_submit(keys=[keys.job(job_id), QUEUE, *base], args=args)
        assert reply == ["CREATED", job_id]
    assert await redis.hget(keys.job("j-by"), "by") == "alice"
    assert await redis.hget(keys.job("j-sys"), "by") == ""
