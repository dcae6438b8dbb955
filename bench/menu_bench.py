"""Figure 14: `GET /v1/restaurants/{id}/menu` served from the Redis cache vs from SQL.

Two `rideflow api` processes on one throwaway Redis and one SQLite record (the default store,
in the run's temporary directory): one with the menu cache on, one with it off
(`RIDEFLOW_MENU_CACHE_ENABLED=false`, so every read runs the one SQL statement the cache fills
from, through the same route and the same serialisation). A restaurant with 20 items is created
through the API. Each round drives one process, then the other, closed loop over 32 keep-alive
connections for 5 s (after 1 s of warm-up), 3 rounds; the medians are compared. Only one process
is loaded at a time, so each has the machine's cores to itself (with the load generator).
For information, the bench process then times the two read paths without HTTP: 2,000
`MenuCache.menu` hits and 300 SQL loads (`load_menu`), one at a time.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx

from bench.harness import (
    ADMIN_HEADERS,
    HOST,
    WARMUP_S,
    Figure,
    Processes,
    Server,
    brief,
    failures,
    rideflow_env,
    say,
    start_api,
)
from bench.loadgen import LoadResult, fixed_request, run_load

ROUNDS = 3
CONNECTIONS = 32
DURATION_S = 5.0
ITEMS = 20
TARGET_RATIO = 5.0


async def seed_menu(server: Server) -> str:
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{server.port}", timeout=10, headers=ADMIN_HEADERS
    ) as c:
        r = await c.post(
            "/v1/restaurants",
            json={"name": "Bench Bistro", "location": {"lat": 12.9716, "lng": 77.5946}},
        )
        r.raise_for_status()
        rid = str(r.json()["id"])
        for n in range(ITEMS):
            body = {
                "name": f"Dish {n}",
                "description": "A dish of the bench menu, described in a sentence or two.",
                "price_minor": 10000 + n * 500,
                "currency": "INR",
                **({"stock": 1000, "per_customer_limit": 2} if n % 5 == 0 else {}),
            }
            (await c.post(f"/v1/restaurants/{rid}/menu", json=body)).raise_for_status()
    return rid


async def saturate(server: Server, path: str) -> LoadResult:
    result = await run_load(
        HOST,
        server.port,
        fixed_request("GET", path, headers=ADMIN_HEADERS),
        mode="closed",
        connections=CONNECTIONS,
        duration_s=DURATION_S,
        warmup_s=WARMUP_S,
        max_requests=500_000,
    )
    say(f"  {server.name}: {brief(result, 200)}")
    return result


CALLS = 2_000
SQL_CALLS = 300


async def per_call(redis_url: str, data: Path, rid: str) -> tuple[float, float]:
    """Microseconds per `MenuCache.menu` hit and per SQL load (`load_menu`), in this process,
    one at a time: the read paths without HTTP."""
    from rideflow.config import Settings
    from rideflow.record.db import Record
    from rideflow.redis.connections import create_redis
    from rideflow.redis.scripts import Scripts
    from rideflow.restaurants.cache import MenuCache
    from rideflow.restaurants.store import load_menu

    settings = Settings(redis_url=redis_url, data_dir=str(data))
    redis = create_redis(settings, "bench")
    record = Record(settings)

    async def load(_city: str, restaurant_id: str) -> bytes:
        return await load_menu(record, restaurant_id)

    cache = MenuCache(redis, Scripts.register(redis), settings, load)
    try:
        await cache.menu("blr", rid)
        started = time.perf_counter()
        for _ in range(CALLS):
            await cache.menu("blr", rid)
        hit = (time.perf_counter() - started) / CALLS * 1e6
        await load("blr", rid)
        started = time.perf_counter()
        for _ in range(SQL_CALLS):
            await load("blr", rid)
        sql = (time.perf_counter() - started) / SQL_CALLS * 1e6
    finally:
        await record.dispose()
        await redis.aclose()
    return hit, sql


async def figure_menu(procs: Processes, redis_url: str, tmp: Path) -> Figure:
    data = tmp / "menu-bench"
    common = {"data_dir": str(data)}
    cached = await start_api(procs, "api-menu-cached", rideflow_env(redis_url, extra=common))
    uncached = await start_api(
        procs,
        "api-menu-sql",
        rideflow_env(redis_url, extra={**common, "menu_cache_enabled": "false"}),
    )
    try:
        rid = await seed_menu(cached)
        path = f"/v1/restaurants/{rid}/menu"
        ours: list[LoadResult] = []
        sql: list[LoadResult] = []
        for _ in range(ROUNDS):
            ours.append(await saturate(cached, path))
            sql.append(await saturate(uncached, path))
        hit_us, sql_us = await per_call(redis_url, data, rid)
    finally:
        procs.stop(cached)
        procs.stop(uncached)
    cached_rate = statistics.median(r.throughput for r in ours)
    sql_rate = statistics.median(r.throughput for r in sql)
    ratio = cached_rate / sql_rate if sql_rate else 0.0
    bad = sum(failures(r, 200) for r in ours + sql)
    figure = Figure(
        raw={
            "cached_rounds": [r.as_dict() for r in ours],
            "sql_rounds": [r.as_dict() for r in sql],
            "cached_median_rps": round(cached_rate, 1),
            "sql_median_rps": round(sql_rate, 1),
            "ratio": round(ratio, 2),
        }
    )
    rounds = ", ".join(f"{r.throughput:,.0f}" for r in ours)
    sql_rounds = ", ".join(f"{r.throughput:,.0f}" for r in sql)
    figure.cells["menu_ratio"] = (
        f"{ratio:.1f}x: cached {cached_rate:,.0f} req/s (median of {rounds}), SQL "
        f"{sql_rate:,.0f} req/s (median of {sql_rounds}); {bad} not 200",
        ratio >= TARGET_RATIO and bad == 0,
    )
    p50 = statistics.median(r.p50_ms for r in ours)
    sql_p50 = statistics.median(r.p50_ms for r in sql)
    figure.cells["menu_latency"] = (
        f"p50 {p50:.2f} ms cached, {sql_p50:.2f} ms from SQL (32 connections)",
        None,
    )
    figure.cells["menu_call"] = (
        f"{hit_us:,.0f} us per cache hit vs {sql_us:,.0f} us per SQL read "
        f"({sql_us / hit_us:.1f}x), in-process, one at a time",
        None,
    )
    figure.raw.update(hit_us=round(hit_us, 1), sql_us=round(sql_us, 1))
    return figure


def menu_note() -> str:
    return (__doc__ or "").strip()
