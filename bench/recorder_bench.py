"""Figures 11 to 13: the recorder's throughput into SQLite and PostgreSQL, its lag at 500 orders/s,
and `POST /v1/rides` with the request log on against the bare FastAPI + XADD app.

Throughput: a city stream pre-filled with the events of whole rides (QUEUED with the order's
fields, SEARCHING, OFFERED, ACCEPTED, DRIVER_ARRIVING, PICKED_UP, COMPLETED), written with
pipelined XADDs in the shape the Lua scripts write them, every ride's first event, then every
ride's second and so on (so that, as in a live city, most events update a recorded order), then
one `rideflow recorder` process started against it; the rate is the events over the time from
its start until the group has nothing pending or undelivered (its start-up included). Lag: rides
created and cancelled through the services at 500/s for LAG_S seconds by a child process, while
the recorder runs in the benchmark process (nothing else runs there meanwhile); an event's lag
is the time its batch's transaction had committed minus the event's `at` (Redis time; same
machine).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import uvloop
from redis.asyncio import Redis
from sqlalchemy import select

from bench.harness import (
    CENTRE,
    CITY,
    Figure,
    Processes,
    Server,
    bench_settings,
    latency_summary,
    rideflow_env,
    say,
    services,
    start_api,
)
from bench.loadgen import LoadResult
from rideflow.config import Settings
from rideflow.orders.schemas import RideCreate
from rideflow.record import db
from rideflow.record.models import OrderEvent
from rideflow.redis import keys
from rideflow.redis.streams import Entry
from rideflow.schemas import Point
from rideflow.services import Services
from rideflow.workers.recorder import Recorder

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
THROUGHPUT_RIDES = 15_000  # 7 events each: 105,000 events
LAG_RATE = 500.0
LAG_S = 20.0
REQLOG_ROUNDS = 3
STEPS = ("SEARCHING", "OFFERED", "ACCEPTED", "DRIVER_ARRIVING", "PICKED_UP", "COMPLETED")


@asynccontextmanager
async def record_database(kind: str, tmp: Path) -> AsyncIterator[str]:
    """A migrated, empty record: SQLite under `tmp`, or a throwaway PostgreSQL database."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / f'record-{secrets.token_hex(3)}.db'}"
        await db.upgrade(url)
        yield url
        return
    admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
    name = f"rideflow_bench_{secrets.token_hex(4)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        await db.upgrade(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def ride_events(i: int, at: int, apart: int) -> list[dict[Any, Any]]:
    """Ride `i`'s seven events, as the scripts write them, from `at` on, `apart` us apart."""
    order = f"{CITY}-bench{i:08d}"
    offer = f"{order}-aa"
    events: list[dict[Any, Any]] = [
        {"order": order, "status": "QUEUED", "at": at, "kind": "ride", "window_ms": 15000,
         "customer": f"rider-{i}", "pickup": f"{CENTRE[0]},{CENTRE[1]}",
         "dropoff": f"{CENTRE[0] + 0.02},{CENTRE[1]}", "strategy": "nearest"}
    ]  # fmt: skip
    for n, step in enumerate(STEPS, 1):
        fields: dict[Any, Any] = {"order": order, "status": step, "at": at + apart * n}
        if step != "SEARCHING":
            fields |= {"driver": f"d{i % 997}", "offer": offer}
        if step == "OFFERED":
            fields["pickup_m"] = 412.5
        events.append(fields)
    return events


async def fill_stream(redis: Redis, rides: int) -> int:
    """Whole rides' events on the city stream, interleaved as a busy city's are: every ride's
    QUEUED, then every ride's SEARCHING, and so on. (A ride's events are minutes apart, so
    nearly every event the recorder reads updates an order an earlier batch recorded.)"""
    stream = keys.city_events(CITY)
    at = int(time.time() * 1_000_000)
    rows = [ride_events(i, at + 10 * i, 10 * rides) for i in range(rides)]
    steps = [row[step] for step in range(1 + len(STEPS)) for row in rows]
    for start in range(0, len(steps), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for fields in steps[start : start + 1000]:
                pipe.xadd(stream, fields)
            await pipe.execute()
    return len(steps)


async def recorder_done(redis: Redis) -> bool:
    """The recorder group has read everything on the city stream and acknowledged it."""
    stream = keys.city_events(CITY)
    groups = await redis.xinfo_groups(stream)
    group = next((g for g in groups if g["name"] == keys.RECORDER_GROUP), None)
    return group is not None and group["pending"] == 0 and group.get("lag") == 0


def start_recorder(procs: Processes, name: str, redis_url: str, url: str, tmp: Path) -> Server:
    env = rideflow_env(redis_url, extra={"database_url": url, "data_dir": str(tmp)})
    return procs.start(name, [sys.executable, "-m", "rideflow", "recorder"], env)


async def throughput_into(procs: Processes, redis_url: str, kind: str, tmp: Path) -> dict[str, Any]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        await redis.flushall()
        added = await fill_stream(redis, THROUGHPUT_RIDES)
        async with record_database(kind, tmp) as url:
            started = time.perf_counter()
            recorder = start_recorder(procs, f"recorder-{kind}", redis_url, url, tmp)
            try:
                deadline = time.monotonic() + 300
                while not await recorder_done(redis):
                    recorder.check_alive()
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the recorder did not finish into {kind}")
                    await asyncio.sleep(0.02)
                seconds = time.perf_counter() - started
            finally:
                procs.stop(recorder)
            engine = db.create_engine(url)
            try:
                async with engine.connect() as conn:
                    rows = len((await conn.execute(select(OrderEvent.id))).all())
            finally:
                await engine.dispose()
        rate = added / seconds
        say(f"  {kind}: {added:,} events in {seconds:.1f} s = {rate:,.0f} events/s ({rows:,} rows)")
        return {"events": added, "rows": rows, "seconds": round(seconds, 2), "rate": round(rate)}
    finally:
        await redis.aclose()


async def figure_throughput(procs: Processes, redis_url: str, tmp: Path) -> Figure:
    raw = {k: await throughput_into(procs, redis_url, k, tmp) for k in ("sqlite", "postgresql")}
    figure = Figure(raw=raw)
    for kind, target in (("sqlite", 5_000), ("postgresql", 10_000)):
        r = raw[kind]
        whole = r["rows"] == r["events"]
        figure.cells[f"recorder_{kind}"] = (
            f"{r['rate']:,} events/s ({r['events']:,} events in {r['seconds']} s, start-up"
            f" included; {r['rows']:,} rows)",
            r["rate"] >= target and whole,
        )
    return figure


async def produce(svc: Services) -> int:
    """Rides created and cancelled at LAG_RATE for LAG_S (open loop); the events added."""
    body = RideCreate(
        rider_id="r",
        pickup=Point(lat=CENTRE[0], lng=CENTRE[1]),
        dropoff=Point(lat=CENTRE[0] + 0.02, lng=CENTRE[1]),
    )

    async def one() -> None:
        ride_id, _ = await svc.orders.create_ride(body)
        await svc.orders.step(ride_id, "ride", "cancel")

    started, n = time.monotonic(), 0
    pending: set[asyncio.Task[None]] = set()
    while (elapsed := time.monotonic() - started) < LAG_S:
        while n < int(elapsed * LAG_RATE):
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.sleep(0.002)  # pacing of the open loop
    if pending:
        await asyncio.gather(*pending)
    return n * 2


class TimedRecorder(Recorder):
    """The recorder, noting for each order event when its transaction had committed."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.lags_ms: list[float] = []

    async def commit(self, batch: list[Entry]) -> Counter[str]:
        counts = await super().commit(batch)
        now_us = time.time() * 1_000_000
        self.lags_ms += [
            (now_us - int(e.fields["at"])) / 1000 for e in batch if e.stream in self.city_of
        ]
        return counts


async def lag_into(procs: Processes, redis_url: str, kind: str, tmp: Path) -> dict[str, Any]:
    """The recorder in this process (nothing else runs here meanwhile), the rides from a child
    process (`python -m bench.recorder_bench URL`)."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    await redis.flushall()
    async with record_database(kind, tmp) as url:
        recorder = TimedRecorder(bench_settings(redis_url, database_url=url, data_dir=str(tmp)))
        stop = asyncio.Event()
        running = asyncio.create_task(recorder.run(stop))
        try:
            await wait_ready_redis(lambda: _reading(redis), running)
            env = rideflow_env(redis_url)
            argv = [sys.executable, "-m", "bench.recorder_bench", redis_url]
            producer = procs.start(f"producer-{kind}", argv, env)
            await asyncio.to_thread(producer.proc.wait, LAG_S + 60)
            if producer.proc.returncode != 0:
                raise RuntimeError(f"the producer failed:\n{producer.output()[-2000:]}")
            added = int(producer.output().split()[-1])
            await until(lambda: len(recorder.lags_ms) >= added, 60)
        finally:
            stop.set()
            await running
            await redis.aclose()
    summary = latency_summary(recorder.lags_ms)
    say(f"  {kind}: {added:,} events, lag {summary}")
    return {"events": added, "recorded": len(recorder.lags_ms), **summary}


async def until(check: Callable[[], bool], within: float) -> None:
    """Wait for `check` to hold (at most `within` s; the figure then shows what was recorded)."""
    deadline = time.monotonic() + within
    while True:
        if check() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def wait_ready_redis(
    ready: Callable[[], Awaitable[bool]], running: asyncio.Task[Any]
) -> None:
    deadline = time.monotonic() + 30
    while not await ready():
        if running.done() or time.monotonic() > deadline:
            raise RuntimeError("the recorder did not start")
        await asyncio.sleep(0.02)


async def _reading(redis: Redis) -> bool:
    """The recorder has made its group on the city stream (it logs at WARNING only here)."""
    if not await redis.exists(keys.city_events(CITY)):
        return False
    groups = await redis.xinfo_groups(keys.city_events(CITY))
    return any(g["name"] == keys.RECORDER_GROUP for g in groups)


async def figure_lag(procs: Processes, redis_url: str, tmp: Path) -> Figure:
    raw = {kind: await lag_into(procs, redis_url, kind, tmp) for kind in ("sqlite", "postgresql")}
    figure = Figure(raw=raw)
    for kind in ("sqlite", "postgresql"):
        r = raw[kind]
        figure.cells[f"lag_{kind}"] = (
            f"p99 {r['p99_ms']:,.0f} ms (p50 {r['p50_ms']:,.0f}, max {r['max_ms']:,.0f} ms;"
            f" {r['recorded']:,} of {r['events']:,} events recorded)",
            r["p99_ms"] <= 1000 and r["recorded"] == r["events"],
        )
    return figure


async def figure_reqlog(procs: Processes, redis_url: str, tmp: Path) -> Figure:
    """Saturation against the API with the request log on, off, and the baseline, in turn."""
    from bench.run import ride_requests, saturate, start_baseline

    make = ride_requests()
    extra = {"data_dir": str(tmp), "database_auto_migrate": "false"}
    on = await start_api(procs, "api-reqlog-on", rideflow_env(redis_url, extra=extra))
    no_log = extra | {"request_log_enabled": "false"}
    off = await start_api(procs, "api-reqlog-off", rideflow_env(redis_url, extra=no_log))
    baseline = await start_baseline(procs, redis_url)
    rounds: dict[str, list[LoadResult]] = {"on": [], "off": [], "baseline": []}
    try:
        for _ in range(REQLOG_ROUNDS):
            for name, server in (("on", on), ("off", off), ("baseline", baseline)):
                rounds[name].append(await saturate(server, make))
        redis = Redis.from_url(redis_url, decode_responses=True)
        logged = await redis.xlen(keys.request_log())
        await redis.aclose()
    finally:
        for server in (on, off, baseline):
            procs.stop(server)
    rate = {k: statistics.median(r.throughput for r in v) for k, v in rounds.items()}
    ratio = rate["on"] / rate["baseline"] if rate["baseline"] else 0.0
    figure = Figure(
        raw={
            "median_rps": {k: round(v, 1) for k, v in rate.items()},
            "rounds": {k: [r.as_dict() for r in v] for k, v in rounds.items()},
            "ratio_on_baseline": round(ratio, 4),
            "request_log_entries": logged,
        }
    )
    each = "; ".join(
        f"{k} " + ", ".join(f"{r.throughput:,.0f}" for r in v) for k, v in rounds.items()
    )
    figure.cells["reqlog_ratio"] = (
        f"{100 * ratio:.1f} % ({rate['on']:,.0f} req/s with the request log,"
        f" {rate['off']:,.0f} without, baseline {rate['baseline']:,.0f}; rounds: {each};"
        f" {logged:,} entries logged)",
        ratio >= 0.85 and logged > 0,
    )
    return figure


async def _produce_main(redis_url: str) -> None:
    async with services(redis_url) as svc:
        print(await produce(svc), flush=True)


if __name__ == "__main__":
    uvloop.run(_produce_main(sys.argv[1]))
