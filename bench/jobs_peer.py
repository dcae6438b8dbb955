"""Figure 10: submit -> start against a peer, taskiq with its Redis stream broker, in one run.

2 idle RideFlow job workers (`rideflow jobs`, as figure 9 starts them) and 2 idle taskiq workers
(`taskiq worker bench.peer_taskiq:broker --workers 2`) wait on one throwaway Redis, RideFlow in DB
0 and taskiq in DB 1. Each system gets 2,000 no-op jobs submitted at 200/s per round, the systems
alternating, 3 rounds each (after 100 warm-up jobs each, not counted). A job's latency is the wall
clock (`time.time()`) read by its task as it begins minus the wall clock read by the submitter
just before the submit call; both are processes on this machine, so one clock.

Both are submitted from this process, directly on Redis, as an application would: taskiq through
`.kiq()` (which builds its message and sends one `XADD`), RideFlow through the `job_submit` Lua
step its API runs (one `EVALSHA`), so neither side pays for an HTTP hop the other does not.

RideFlow is driven through its Lua file and key layout only (`rideflow.keys`), not its Python
modules, which are being moved; the task module is `bench/peer_tasks.py`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from bench import jobs_bench, peer_taskiq
from bench.harness import (
    Figure,
    Processes,
    Server,
    latency_summary,
    rideflow_env,
    say,
    wait_ready,
)
from bench.peer_tasks import STARTS, TASK
from rideflow.redis import keys
from rideflow.redis.scripts import Scripts

ROUNDS = 3
JOBS = 2_000
RATE = 200.0
WARMUP_JOBS = 100
WORKERS = 2
TASKIQ_DB = 1
START_WAIT_S = 30.0
POLL_S = 0.05

Submit = Callable[[str], Awaitable[Any]]


@dataclass(slots=True)
class Side:
    """One system: how to submit a job carrying `key`, and where its tasks write their stamps."""

    name: str
    submit: Submit
    redis: Redis
    rounds: list[dict[str, Any]] = field(default_factory=list)


async def rideflow_submitter(redis: Redis) -> Submit:
    """Submit a `bench_noop` job at default priority with the Lua step the API runs (minus
    HTTP), through RideFlow's own script registration."""
    script = Scripts.register(redis).job_submit
    common = [keys.job_queue("default"), keys.jobs_delayed(), keys.jobs_index("pending")]
    stats = keys.job_stats(TASK)
    queue = keys.queue_number("default")

    async def submit(key: str) -> Any:
        job_id = str(uuid.uuid4())
        payload = orjson.dumps({"key": key}).decode()
        job_keys = [keys.job(job_id), *common, stats]
        args: list[str | int] = [job_id, TASK, payload, "default", 3, 300, 0, 0, "", queue]
        return await script(keys=job_keys, args=args)

    return submit


def with_db(url: str, db: int) -> str:
    """The same Redis URL on another DB."""
    return f"{url.rsplit('/', 1)[0]}/{db}"


def children(pid: int) -> dict[int, bytes]:
    """The direct children of a process, with their command lines."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    out = {}
    for child in map(int, listed):
        try:
            out[child] = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
    return out


def stop_taskiq(procs: Processes, server: Server, kids: dict[int, bytes]) -> None:
    """SIGTERM to the taskiq parent (which stops its workers); any worker still there after
    (the same pid with the same command line) gets SIGKILL by its pid."""
    procs.stop(server)
    deadline = time.monotonic() + 5
    for pid, cmdline in kids.items():
        while time.monotonic() < deadline:
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() != cmdline:
                    break
            except OSError:
                break
            time.sleep(0.05)
        else:
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


async def start_taskiq(procs: Processes, redis: Redis, url: str) -> tuple[Server, dict[int, bytes]]:
    """`taskiq worker` with WORKERS worker processes, ready once each reads the stream."""
    argv = [sys.executable, "-m", "taskiq", "worker", "bench.peer_taskiq:broker"]
    argv += ["--workers", str(WORKERS), "--log-level", "WARNING"]
    env = rideflow_env(url) | {peer_taskiq.URL_ENV: url}
    server = procs.start("taskiq-peer", argv, env)

    async def reading() -> bool:
        clients = await redis.client_list()
        n = sum(1 for c in clients if c["db"] == str(TASKIQ_DB) and c["cmd"] == "xreadgroup")
        return n >= WORKERS

    await wait_ready(server, reading, f"{WORKERS} taskiq workers to read their stream")
    return server, children(server.pid)


async def run_round(side: Side, label: str, n: int) -> dict[str, Any]:
    """Submit `n` jobs at RATE on an open-loop schedule; wait until every task has begun."""
    loop = asyncio.get_running_loop()
    names = [f"{label}-{i}" for i in range(n)]
    submitted: list[float] = []
    call_ms: list[float] = []
    lag_ms: list[float] = []
    begin = loop.time() + 0.05
    for i, key in enumerate(names):
        due = begin + i / RATE
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        lag_ms.append(max(0.0, loop.time() - due) * 1000)
        t0 = time.time()
        await side.submit(key)
        call_ms.append((time.time() - t0) * 1000)
        submitted.append(t0)
    deadline = time.monotonic() + START_WAIT_S
    while True:
        stamps = await side.redis.hmget(STARTS, names)
        if all(stamps) or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_S)
    await side.redis.delete(STARTS)
    waits = [(float(s) - t) * 1000 for s, t in zip(stamps, submitted, strict=True) if s]
    return {
        "jobs": n,
        "not_started": n - len(waits),
        "submit_to_start_ms": latency_summary(waits),
        "submit_call_ms": latency_summary(call_ms),
        "send_lag_ms": latency_summary(lag_ms),
    }


async def figure_jobs_peer(procs: Processes, redis_url: str) -> Figure:
    """Start both systems' workers, warm each up, then alternate rounds."""
    taskiq_url = with_db(redis_url, TASKIQ_DB)
    ours_redis = Redis.from_url(redis_url, decode_responses=True)
    theirs_redis = Redis.from_url(taskiq_url, decode_responses=True)
    broker, noop = peer_taskiq.make_broker(taskiq_url)
    taskiq: tuple[Server, dict[int, bytes]] | None = None
    workers: list[Server] = []
    try:
        settings = {"job_modules": orjson.dumps(["bench.peer_tasks"]).decode()}
        workers = await jobs_bench.start_workers(
            procs, ours_redis, redis_url, WORKERS, "jobs-peer", settings
        )
        taskiq = await start_taskiq(procs, theirs_redis, taskiq_url)
        await broker.startup()

        async def kiq(key: str) -> Any:
            return await noop.kiq(key)

        ours = Side("rideflow", await rideflow_submitter(ours_redis), ours_redis)
        theirs = Side("taskiq", kiq, theirs_redis)
        for side in (ours, theirs):
            warm = await run_round(side, f"{side.name}-warm", WARMUP_JOBS)
            say(f"  {side.name} warm-up: {warm['submit_to_start_ms']}")
        for r in range(ROUNDS):
            for side in (ours, theirs) if r % 2 == 0 else (theirs, ours):
                result = await run_round(side, f"{side.name}-{r}", JOBS)
                side.rounds.append(result)
                s = result["submit_to_start_ms"]
                say(
                    f"  round {r + 1} {side.name}: p50 {s['p50_ms']:.3f} ms, p99"
                    f" {s['p99_ms']:.3f} ms, max {s['max_ms']:.3f} ms;"
                    f" {result['not_started']} not started"
                )
            for w in (*workers, taskiq[0]):
                w.check_alive()
    finally:
        await broker.shutdown()
        if taskiq is not None:
            stop_taskiq(procs, *taskiq)
        for w in workers:
            procs.stop(w)
        await ours_redis.aclose()
        await theirs_redis.aclose()
    return peer_figure(ours.rounds, theirs.rounds)


def medians(rounds: list[dict[str, Any]], what: str = "submit_to_start_ms") -> dict[str, float]:
    return {
        p: round(statistics.median(r[what][p] for r in rounds), 3)
        for p in ("p50_ms", "p90_ms", "p99_ms", "max_ms")
    }


def peer_figure(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> Figure:
    """Medians over rounds of each system's percentiles, and the verdict on p99."""
    mine, peer = medians(ours), medians(theirs)
    missing = sum(r["not_started"] for r in (*ours, *theirs))
    figure = Figure(
        raw={
            "clock": "time.time() in the submitter and in the task",
            "rideflow_rounds": ours,
            "taskiq_rounds": theirs,
            "rideflow_median": mine,
            "taskiq_median": peer,
            "rideflow_submit_call_median": medians(ours, "submit_call_ms"),
            "taskiq_submit_call_median": medians(theirs, "submit_call_ms"),
        }
    )

    def per_round(rounds: list[dict[str, Any]]) -> str:
        return ", ".join(
            f"{r['submit_to_start_ms']['p50_ms']:.2f}/{r['submit_to_start_ms']['p99_ms']:.2f}"
            for r in rounds
        )

    figure.cells["peer_p99"] = (
        f"RideFlow p50 {mine['p50_ms']:.2f} ms / p99 {mine['p99_ms']:.2f} ms; taskiq p50"
        f" {peer['p50_ms']:.2f} ms / p99 {peer['p99_ms']:.2f} ms (medians of {ROUNDS} rounds);"
        f" {missing} jobs not started",
        missing == 0 and mine["p99_ms"] <= peer["p99_ms"],
    )
    call_ours = medians(ours, "submit_call_ms")["p50_ms"]
    call_theirs = medians(theirs, "submit_call_ms")["p50_ms"]
    figure.cells["peer_rounds"] = (
        f"p50/p99 ms per round: RideFlow {per_round(ours)}; taskiq {per_round(theirs)}."
        f" Submit call p50: RideFlow {call_ours:.3f} ms, taskiq {call_theirs:.3f} ms",
        None,
    )
    return figure


def jobs_peer_note() -> str:
    """How figure 10 is measured."""
    return (
        f"10. **Submit -> start against taskiq.** One Redis: RideFlow in DB 0 with {WORKERS}"
        f" `rideflow jobs` processes ({jobs_bench.WORKER_CONCURRENCY} at once each, task module"
        f" `bench/peer_tasks.py`), taskiq (`taskiq` + `taskiq-redis`, the `bench` extra) in DB"
        f" {TASKIQ_DB} with `taskiq worker bench.peer_taskiq:broker --workers {WORKERS}`"
        " (`RedisStreamBroker`, its defaults otherwise), all idle before each round. Each system"
        f" gets {WARMUP_JOBS} warm-up jobs, then {ROUNDS} rounds of {JOBS:,} no-op jobs submitted"
        f" one at a time on an open-loop schedule of {RATE:,.0f}/s, the systems alternating"
        " (RideFlow first in odd rounds, taskiq first in even ones). Both are submitted from the"
        " benchmark process straight to Redis, as an application would: taskiq by `.kiq()` (its"
        " message plus one `XADD`), RideFlow by the `job_submit` Lua step of `POST /v1/jobs`"
        " (one `EVALSHA`), so no HTTP hop on either side. A job's latency is `time.time()` read"
        " by the task as its first statement minus `time.time()` read just before the submit"
        " call (one machine, one clock, microsecond resolution); the task writes its stamp to"
        " Redis after reading it. Reported: each system's p50 and p99 per round (nearest rank"
        " over the round's jobs) and their medians over rounds; met when RideFlow's p99 is at"
        " most taskiq's and every job started. Throughput is figure 9's, not measured here."
    )
