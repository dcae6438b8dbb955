"""Figure 9 (issue 4): background jobs. Throughput with status tracking on 2 workers, submit ->
start latency at 1,000 jobs/s through the API, and 30 `kill -9` of workers under 1,000 jobs/s
with nothing lost and nothing completed twice.

Every job is a built-in `send_email` (it logs, and the workers run at log level WARNING), so what
is measured is the job system itself: the queue, the status changes, the retries' machinery.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from bench.harness import (
    HOST,
    SEED,
    WARMUP_S,
    Figure,
    Processes,
    Server,
    SetupError,
    json_auth_headers,
    latency_summary,
    rideflow_env,
    say,
    start_api,
    wait_ready,
)
from bench.loadgen import OnResponse, RequestSpec, run_load
from rideflow.config import Settings
from rideflow.redis import keys
from rideflow.redis.connections import create_redis
from rideflow.redis.scripts import Scripts

# 9a. throughput
THROUGHPUT_JOBS = 60_000
THROUGHPUT_WORKERS = 2
WORKER_CONCURRENCY = 64
FILL_BATCH = 1_000
# 9b. submit -> start
SUBMIT_RATE = 1_000.0
SUBMIT_DURATION_S = 10.0
SUBMIT_CONNECTIONS = 32
# 9c. kills
KILL_WORKERS = 3
KILLS = 30
KILL_EVERY_S = 1.0
KILL_RATE = 1_000.0
FINISH_WAIT_S = 120.0

SEND_EMAIL = orjson.dumps({"to": "rider@example.com", "subject": "bench", "body": ""}).decode()


async def figure_jobs(procs: Processes, redis_url: str) -> Figure:
    """The three measurements, one after the other, each on an empty job keyspace."""
    settings = Settings(redis_url=redis_url, log_level="WARNING")
    redis = create_redis(settings, "bench-jobs")
    try:
        raw: dict[str, Any] = {}
        raw["throughput"] = await throughput(procs, redis, redis_url)
        await forget_jobs(redis)
        raw["submit_start"] = await submit_to_start(procs, redis, redis_url)
        await forget_jobs(redis)
        raw["kills"] = await kills(procs, redis, redis_url)
        await forget_jobs(redis)
    finally:
        await redis.aclose()
    return jobs_figure(raw)


async def start_workers(
    procs: Processes,
    redis: Redis,
    redis_url: str,
    n: int,
    name: str,
    settings: dict[str, str] | None = None,
) -> list[Server]:
    """`n` job workers, each ready once it reads its queues; `settings` as for `rideflow_env`."""
    return [await start_worker(procs, redis, redis_url, f"{name}{i}", settings) for i in range(n)]


async def start_worker(
    procs: Processes,
    redis: Redis,
    redis_url: str,
    name: str,
    settings: dict[str, str] | None = None,
) -> Server:
    argv = [sys.executable, "-m", "rideflow", "jobs", "--concurrency", str(WORKER_CONCURRENCY)]
    server = procs.start(name, argv, rideflow_env(redis_url, extra=settings))

    async def reading() -> bool:
        clients = await redis.client_list()
        return any(c.get("name") == "rideflow-jobs" and c["cmd"] == "xreadgroup" for c in clients)

    before = await redis.client_list()
    known = {c["id"] for c in before if c.get("name") == "rideflow-jobs"}

    async def new_reader() -> bool:
        clients = await redis.client_list()
        return any(
            c.get("name") == "rideflow-jobs" and c["id"] not in known and c["cmd"] == "xreadgroup"
            for c in clients
        )

    await wait_ready(server, new_reader if known else reading, f"{name} to read its queues")
    return server


async def fill(redis: Redis, n: int) -> list[str]:
    """`n` send_email jobs queued at default priority, submitted in pipelined batches of the
    same Lua step the API uses."""
    scripts = Scripts.register(redis)
    await redis.script_load(scripts.job_submit.source)
    sha = scripts.job_submit.sha
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for start in range(0, n, FILL_BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in ids[start : start + FILL_BATCH]:
                job_keys = [
                    keys.job(job_id),
                    keys.job_queue("default"),
                    keys.jobs_delayed(),
                    keys.jobs_index("pending"),
                    keys.job_stats("send_email"),
                ]
                pipe.execute_command(
                    "EVALSHA", sha, len(job_keys), *job_keys,
                    job_id, "send_email", SEND_EMAIL, "default", 3, 300, 0, 0, "", 2,
                )  # fmt: skip
            await pipe.execute()
    return ids


async def job_fields(redis: Redis, ids: list[str], names: list[str]) -> list[list[str | None]]:
    out: list[list[str | None]] = []
    for start in range(0, len(ids), 5_000):
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in ids[start : start + 5_000]:
                pipe.hmget(keys.job(job_id), names)
            out += cast(list[list[str | None]], await pipe.execute())
    return out


async def throughput(procs: Processes, redis: Redis, redis_url: str) -> dict[str, Any]:
    """A backlog of THROUGHPUT_JOBS, then 2 workers: jobs over the time from the first start to
    the last finish, both on Redis' clock (process start-up excluded)."""
    say(f"  jobs: filling {THROUGHPUT_JOBS:,} jobs")
    ids = await fill(redis, THROUGHPUT_JOBS)
    workers = await start_workers(procs, redis, redis_url, THROUGHPUT_WORKERS, "jobs-tp")
    try:
        deadline = time.monotonic() + 120
        while await redis.zcard(keys.jobs_index("completed")) < THROUGHPUT_JOBS:
            for w in workers:
                w.check_alive()
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        for w in workers:
            procs.stop(w)
    rows = await job_fields(redis, ids, ["status", "started", "finished", "attempts"])
    statuses = Counter(str(r[0]) for r in rows)
    started = [int(str(r[1])) for r in rows if r[1]]
    finished = [int(str(r[2])) for r in rows if r[2]]
    span_s = (max(finished) - min(started)) / 1000 if finished and started else float("inf")
    rate = statuses.get("completed", 0) / span_s if span_s else 0.0
    say(f"  jobs: {statuses.get('completed', 0):,} completed in {span_s:.2f} s = {rate:,.0f}/s")
    return {
        "jobs": THROUGHPUT_JOBS,
        "workers": THROUGHPUT_WORKERS,
        "statuses": dict(statuses),
        "span_s": round(span_s, 3),
        "jobs_per_s": round(rate, 1),
        "attempts_over_1": sum(1 for r in rows if r[3] and int(str(r[3])) > 1),
    }


def submitter() -> tuple[Callable[[int], RequestSpec], OnResponse, list[str]]:
    """`POST /v1/jobs` requests for the load generator, and the job ids they are answered
    with (filled in as the 202s come)."""
    body = orjson.dumps({"task": "send_email", "payload": orjson.loads(SEND_EMAIL)})
    job_ids: list[str] = []
    headers = json_auth_headers()

    def make(_i: int) -> RequestSpec:
        return ("POST", "/v1/jobs", body, headers)

    def seen(_i: int, status: int, answer: bytes) -> None:
        if status == 202:
            job_ids.append(str(orjson.loads(answer)["job_id"]))

    return make, seen, job_ids


async def submit_to_start(procs: Processes, redis: Redis, redis_url: str) -> dict[str, Any]:
    """Open loop at SUBMIT_RATE to `POST /v1/jobs` on one API process, 2 workers waiting; each
    job's start minus its creation, both stamped by Redis (ms) in the job's hash."""
    total = int(SUBMIT_RATE * (SUBMIT_DURATION_S + WARMUP_S)) + 1
    make, seen, job_ids = submitter()

    workers = await start_workers(procs, redis, redis_url, THROUGHPUT_WORKERS, "jobs-lat")
    api = await start_api(procs, "api-jobs", rideflow_env(redis_url))
    try:
        result = await run_load(
            HOST,
            api.port,
            make,
            mode="open",
            rate=SUBMIT_RATE,
            connections=SUBMIT_CONNECTIONS,
            duration_s=SUBMIT_DURATION_S,
            warmup_s=WARMUP_S,
            max_requests=total,
            on_response=seen,
        )
        await wait_finished(redis, job_ids, FINISH_WAIT_S)
    finally:
        procs.stop(api)
        for w in workers:
            procs.stop(w)
    rows = await job_fields(redis, job_ids, ["status", "created", "started"])
    waits = [int(str(r[2])) - int(str(r[1])) for r in rows if r[1] and r[2]]
    summary = latency_summary([float(w) for w in waits])
    say(f"  jobs: submit -> start {summary}")
    return {
        "offered_rate": SUBMIT_RATE,
        "load": result.as_dict(),
        "accepted": len(job_ids),
        "statuses": dict(Counter(str(r[0]) for r in rows)),
        "submit_to_start_ms": summary,
    }


async def wait_finished(redis: Redis, ids: list[str], within: float) -> Counter[str]:
    """Wait until every job is final (or `within` passes); their statuses."""
    deadline = time.monotonic() + within
    while True:
        statuses = Counter(str(r[0]) for r in await job_fields(redis, ids, ["status"]))
        if sum(statuses[s] for s in ("completed", "failed", "cancelled")) == len(ids):
            return statuses
        if time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(0.5)


async def kills(procs: Processes, redis: Redis, redis_url: str) -> dict[str, Any]:
    """KILL_WORKERS workers under SUBMIT_RATE through the API, one killed with SIGKILL every
    KILL_EVERY_S (KILLS in all) and replaced; then every job must be completed, with exactly one
    successful attempt recorded."""
    rng = random.Random(SEED)
    total = int(KILL_RATE * (KILLS * KILL_EVERY_S + 5))
    make, seen, job_ids = submitter()

    workers = await start_workers(procs, redis, redis_url, KILL_WORKERS, "jobs-k")
    api = await start_api(procs, "api-jobs-k", rideflow_env(redis_url))
    killed = 0
    try:
        load = asyncio.create_task(
            run_load(
                HOST,
                api.port,
                make,
                mode="open",
                rate=KILL_RATE,
                connections=SUBMIT_CONNECTIONS,
                duration_s=total / KILL_RATE,
                max_requests=total,
                on_response=seen,
            )
        )
        while killed < KILLS:
            await asyncio.sleep(KILL_EVERY_S * rng.uniform(0.5, 1.5))
            i = rng.randrange(len(workers))
            procs.kill9(workers[i])
            killed += 1
            workers[i] = await start_worker(procs, redis, redis_url, f"jobs-k{i}-{killed}")
        result = await load
        statuses = await wait_finished(redis, job_ids, FINISH_WAIT_S)
    finally:
        procs.stop(api)
        for w in workers:
            procs.stop(w)
    if not job_ids:
        raise SetupError("no job was accepted during the kill figure")
    ok_attempts: Counter[int] = Counter()
    runs: Counter[int] = Counter()
    for start in range(0, len(job_ids), 5_000):
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids[start : start + 5_000]:
                pipe.lrange(keys.job_attempts(job_id), 0, -1)
                pipe.hget(keys.job(job_id), "attempts")
            replies = await pipe.execute()
        for attempts, started in zip(replies[::2], replies[1::2], strict=True):
            ok_attempts[sum(orjson.loads(a)["outcome"] == "ok" for a in attempts)] += 1
            runs[int(started or 0)] += 1
    lost = len(job_ids) - statuses.get("completed", 0)
    say(
        f"  jobs: {killed} kills, {len(job_ids):,} jobs: {dict(statuses)}; "
        f"successful attempts per job {dict(ok_attempts)}; starts per job {dict(runs)}"
    )
    return {
        "kills": killed,
        "accepted": len(job_ids),
        "load": result.as_dict(),
        "statuses": dict(statuses),
        "lost": lost,
        "completed_twice": sum(n for k, n in ok_attempts.items() if k > 1),
        "never_completed": ok_attempts.get(0, 0),
        "started_more_than_once": sum(n for k, n in runs.items() if k > 1),
    }


async def forget_jobs(redis: Redis) -> None:
    """Delete every job key (the figures share one Redis)."""
    batch: list[str] = []
    async for key in redis.scan_iter(match="rf:{jobs}:*", count=5_000):
        batch.append(str(key))
        if len(batch) >= 5_000:
            await redis.unlink(*batch)
            batch = []
    if batch:
        await redis.unlink(*batch)


def jobs_figure(raw: dict[str, Any]) -> Figure:
    tp, lat, k = raw["throughput"], raw["submit_start"], raw["kills"]
    figure = Figure(raw=raw)
    tp_ok = tp["statuses"].get("completed", 0) == tp["jobs"]
    figure.cells["jobs_throughput"] = (
        f"{tp['jobs_per_s']:,.0f} jobs/s ({tp['jobs']:,} jobs in {tp['span_s']:.2f} s,"
        f" {tp['workers']} workers)",
        tp_ok and tp["jobs_per_s"] >= 6_000,
    )
    s = lat["submit_to_start_ms"]
    lat_ok = lat["statuses"].get("completed", 0) == lat["accepted"] > 0
    figure.cells["jobs_submit_start"] = (
        f"p99 {s['p99_ms']:.0f} ms (p50 {s['p50_ms']:.0f}, max {s['max_ms']:.0f}; ms resolution;"
        f" {lat['accepted']:,} jobs at {lat['load']['throughput']:,.0f}/s)",
        lat_ok and s["p99_ms"] <= 5,
    )
    figure.cells["jobs_kills"] = (
        f"{k['kills']} kills, {k['accepted']:,} jobs: {k['lost']} lost, {k['completed_twice']}"
        f" completed twice ({k['started_more_than_once']:,} started again after a kill)",
        k["kills"] >= 30 and k["lost"] == 0 and k["completed_twice"] == 0,
    )
    return figure


def jobs_note() -> str:
    """How figure 9 is measured."""
    return (
        f"9. **Jobs.** (a) {THROUGHPUT_JOBS:,} `send_email` jobs are queued first (pipelined,"
        f" the same Lua step as the API), then {THROUGHPUT_WORKERS} `rideflow jobs` processes"
        f" ({WORKER_CONCURRENCY} at once each) start; throughput is the jobs completed over the"
        " time from the first start to the last finish, both stamped by Redis in each job's hash,"
        " so process start-up is excluded and every job's status went pending -> processing ->"
        f" completed. (b) One API process gets `POST /v1/jobs` open loop at {SUBMIT_RATE:,.0f}/s"
        f" for {WARMUP_S:g} + {SUBMIT_DURATION_S:g} s with 2 workers waiting; submit -> start is"
        " each job's `started` minus `created`, both Redis' clock in ms (so 0-1 ms reads as 0 or"
        f" 1). (c) {KILL_WORKERS} workers while the API takes jobs at {KILL_RATE:,.0f}/s; every"
        f" ~{KILL_EVERY_S:g} s one worker gets SIGKILL and a replacement starts, {KILLS} kills in"
        " all; then every accepted job must end `completed` with exactly one successful attempt"
        " in its attempts list (a job whose worker died is started again, which is counted)."
    )
