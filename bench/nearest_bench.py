"""Figure 15 (issue 9): the nearest 10 of 50,000 drivers, PostGIS KNN against Redis GEO, side by
side, for information (no target): why live matching stays on Redis GEO.

The same 50,000 positions (30 x 30 km around Bengaluru, `make_fleet`) go into a GEO set on the
bench's throwaway Redis and into the `drivers` table of a throwaway PostgreSQL + PostGIS
database created here (migrated by RideFlow's own migrations: a `geometry(Point, 4326)` column
with a GiST index) and dropped afterwards. The same query points are asked of three readers:

- Redis: `GEOSEARCH key FROMLONLAT lng lat BYRADIUS 1000 m ASC COUNT 10 WITHDIST`, the matcher's
  first search (redis-py, hiredis);
- PostGIS: `SELECT id, ST_Distance(geom::geography, pt::geography) FROM drivers
  ORDER BY geom <-> pt LIMIT 10`, one prepared statement on asyncpg (the KNN walk of the GiST
  index);
- the record's `nearest()` behind `GET /v1/admin/drivers/nearest` (SQLAlchemy; KNN, then the
  exact great-circle re-rank of the drivers within the k-th distance).

Latency: one query at a time on one connection, alternating readers per round. Throughput:
CONCURRENCY queries in flight over a pool of that many connections.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from redis.asyncio import Redis

from bench.harness import SEED, Figure, latency_summary, make_fleet, point_in_square, say
from rideflow.config import Settings
from rideflow.record import db, nearest
from rideflow.record.db import Record

POSTGRES_ADMIN = os.environ.get(
    "RIDEFLOW_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
GEO_KEY = "bench:nearest:geo"
K = 10
RADIUS_M = 1000
QUERIES = 2_000
WARM_QUERIES = 200
ROUNDS = 3
CONCURRENCY = 8
THROUGHPUT_QUERIES = 4_000
AGREE_POINTS = 200
SERVER_POINTS = 500
KNN = (
    "SELECT id, ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography)"
    " FROM drivers ORDER BY geom <-> ST_SetSRID(ST_MakePoint($1, $2), 4326) LIMIT $3"
)

Query = Callable[[float, float], Awaitable[Any]]


async def seed_postgres(url: str, fleet: list[tuple[str, float, float]]) -> float:
    started = time.perf_counter()
    await db.upgrade(url)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.copy_records_to_table(
            "drivers",
            records=[("blr", d, lat, lng, "online", 0) for d, lat, lng in fleet],
            columns=["city", "id", "lat", "lng", "status", "updated_us"],
        )
        await conn.execute("ANALYZE drivers")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def seed_redis(redis: Redis, fleet: list[tuple[str, float, float]]) -> float:
    started = time.perf_counter()
    await redis.delete(GEO_KEY)
    for start in range(0, len(fleet), 5_000):
        values: list[Any] = []
        for driver, lat, lng in fleet[start : start + 5_000]:
            values += [lng, lat, driver]
        await redis.geoadd(GEO_KEY, values)
    return time.perf_counter() - started


async def timed(query: Query, points: list[tuple[float, float]]) -> list[float]:
    out = []
    for lat, lng in points:
        started = time.perf_counter()
        hits = await query(lat, lng)
        out.append((time.perf_counter() - started) * 1000)
        if len(hits) != K:
            raise RuntimeError(f"a query found {len(hits)} drivers, not {K}")
    return out


async def throughput(query: Query, points: list[tuple[float, float]]) -> float:
    """Queries per second with CONCURRENCY in flight."""
    share = [points[i::CONCURRENCY] for i in range(CONCURRENCY)]

    async def worker(mine: list[tuple[float, float]]) -> None:
        for lat, lng in mine:
            await query(lat, lng)

    started = time.perf_counter()
    await asyncio.gather(*(worker(mine) for mine in share))
    return len(points) / (time.perf_counter() - started)


def make_readers(redis: Redis, pool: asyncpg.Pool, record: Record) -> dict[str, Query]:
    """The three ways of asking, each a function of the query point."""

    async def by_redis(lat: float, lng: float) -> Any:
        return await redis.geosearch(
            GEO_KEY,
            longitude=lng,
            latitude=lat,
            radius=RADIUS_M,
            unit="m",
            sort="ASC",
            count=K,
            withdist=True,
        )

    async def by_postgis(lat: float, lng: float) -> Any:
        async with pool.acquire() as conn:
            return await conn.fetch(KNN, lng, lat, K)

    async def by_record(lat: float, lng: float) -> Any:
        return await nearest.nearest(record, lat, lng, K)

    return {"redis": by_redis, "postgis": by_postgis, "record": by_record}


async def agreement(
    readers: dict[str, Query], points: list[tuple[float, float]]
) -> tuple[int, float]:
    """At how many points Redis and the record name the same 10 drivers, and, where they do
    not, the largest gap between their 10th distances in metres (Redis stores positions as
    52-bit geohashes, ~0.6 m off, so the 10th and 11th may swap at the margin)."""
    same, gap = 0, 0.0
    for lat, lng in points:
        hits = await readers["redis"](lat, lng)
        found = await readers["record"](lat, lng)
        if {h[0].decode() for h in hits} == {d.id for d in found}:
            same += 1
        else:
            gap = max(gap, abs(float(hits[-1][1]) - found[-1].distance_m))
    return same, gap


async def server_side(
    redis: Redis, pool: asyncpg.Pool, points: list[tuple[float, float]]
) -> dict[str, float]:
    """Median time each server spends per query: Redis' own `usec_per_call` for GEOSEARCH
    (INFO commandstats, after a reset) and PostgreSQL's `Execution Time` of EXPLAIN ANALYZE."""
    await redis.config_resetstat()
    for lat, lng in points:
        await redis.geosearch(
            GEO_KEY, longitude=lng, latitude=lat, radius=RADIUS_M, unit="m", sort="ASC", count=K
        )
    stats = await redis.info("commandstats")
    redis_us = float(stats["cmdstat_geosearch"]["usec_per_call"])
    times = []
    async with pool.acquire() as conn:
        for lat, lng in points:
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {KNN}", lng, lat, K)
            parsed = plan if isinstance(plan, list) else orjson.loads(plan)
            times.append(float(parsed[0]["Execution Time"]) * 1000)
    return {"redis_us": round(redis_us, 1), "postgis_us": round(statistics.median(times), 1)}


async def measure_readers(
    readers: dict[str, Query],
    points: list[tuple[float, float]],
    warm: list[tuple[float, float]],
    more: list[tuple[float, float]],
) -> tuple[dict[str, list[dict[str, float]]], dict[str, list[float]]]:
    """Latency summaries and throughputs per reader, per round."""
    rounds: dict[str, list[dict[str, float]]] = {r: [] for r in readers}
    rates: dict[str, list[float]] = {r: [] for r in readers}
    for query in readers.values():
        await timed(query, warm)
    for n in range(ROUNDS):
        for reader, query in readers.items():
            rounds[reader].append(latency_summary(await timed(query, points)))
            rates[reader].append(await throughput(query, more))
        say(
            f"  round {n + 1}: "
            + "; ".join(
                f"{r} p50 {rounds[r][-1]['p50_ms']} p99 {rounds[r][-1]['p99_ms']} ms, "
                f"{rates[r][-1]:,.0f} q/s"
                for r in readers
            )
        )
    return rounds, rates


async def figure_nearest(redis_url: str) -> Figure:
    fleet = make_fleet()
    rng = random.Random(SEED + 11)
    # Query points over the inner 28 x 28 km, so every 1 km search finds 10 drivers.
    points = [point_in_square(rng, 28.0) for _ in range(QUERIES)]
    warm = [point_in_square(rng, 28.0) for _ in range(WARM_QUERIES)]
    more = [point_in_square(rng, 28.0) for _ in range(THROUGHPUT_QUERIES)]
    admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
    name = f"rideflow_bench_{secrets.token_hex(4)}"
    base = POSTGRES_ADMIN.rsplit("/", 1)[0]
    await admin.execute(f'CREATE DATABASE "{name}"')
    redis = Redis.from_url(redis_url, max_connections=CONCURRENCY * 2)
    url = f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    record = Record(Settings(database_url=url, redis_url=redis_url))
    pool: asyncpg.Pool | None = None
    try:
        say(f"  seeding {len(fleet):,} drivers into PostgreSQL ({name}) and a Redis GEO set")
        pg_s = await seed_postgres(url, fleet)
        redis_s = await seed_redis(redis, fleet)
        say(f"  seeded: PostgreSQL {pg_s:.1f} s, Redis {redis_s:.1f} s")
        pool = await asyncpg.create_pool(
            f"{base}/{name}", min_size=CONCURRENCY, max_size=CONCURRENCY
        )
        readers = make_readers(redis, pool, record)
        same, gap = await agreement(readers, points[:AGREE_POINTS])
        rounds, rates = await measure_readers(readers, points, warm, more)
        server = await server_side(redis, pool, points[:SERVER_POINTS])
        say(f"  server side: {server}")
    finally:
        await record.dispose()
        if pool is not None:
            await pool.close()
        await redis.delete(GEO_KEY)
        await redis.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    def cell(reader: str) -> str:
        p50 = statistics.median(r["p50_ms"] for r in rounds[reader])
        p99 = statistics.median(r["p99_ms"] for r in rounds[reader])
        rate = statistics.median(rates[reader])
        return f"p50 {p50:.3f} ms, p99 {p99:.3f} ms; {rate:,.0f} queries/s"

    figure = Figure(
        raw={
            "rounds": rounds,
            "rates": rates,
            "seed_s": {"postgres": round(pg_s, 1), "redis": round(redis_s, 1)},
            "server_side": server,
            "agreement": {"points": AGREE_POINTS, "same": same, "max_10th_gap_m": gap},
        }
    )
    figure.cells["nearest_redis"] = (
        f"{cell('redis')}; Redis' own time {server['redis_us']:g} us per search",
        None,
    )
    figure.cells["nearest_postgis"] = (
        f"{cell('postgis')}; PostgreSQL's own time {server['postgis_us']:g} us per query",
        None,
    )
    figure.cells["nearest_record"] = (
        f"{cell('record')}; the same 10 drivers as Redis at {same} of {AGREE_POINTS} points"
        + (f" (elsewhere the 10th distances differ by <= {gap:.2f} m)" if gap else ""),
        None,
    )
    return figure


def nearest_note() -> str:
    return (
        f"15. **Nearest {K} of 50,000 drivers.** (information) The fleet of figure 2 (50,000"
        " positions over 30 x 30 km around Bengaluru) seeded into a Redis GEO set on the"
        " throwaway Redis and into the `drivers` table of a throwaway PostgreSQL 15 + PostGIS"
        " database (RideFlow's migrations: `geometry(Point, 4326)` with a GiST index; `ANALYZE`"
        " after the load), dropped afterwards. The same query points, uniform over the inner"
        f" 28 x 28 km, for three readers: Redis `GEOSEARCH … BYRADIUS {RADIUS_M} m ASC COUNT"
        f" {K} WITHDIST` (the matcher's first search); PostGIS `ORDER BY geom <-> point LIMIT"
        f" {K}` with `ST_Distance` on geography, one prepared statement on asyncpg; and the"
        " record's `nearest()` behind `GET /v1/admin/drivers/nearest` (SQLAlchemy: KNN, then"
        f" the exact great-circle re-rank). {ROUNDS} rounds, readers alternating, medians over"
        f" rounds. Latency: {QUERIES:,} queries one at a time on one connection after"
        f" {WARM_QUERIES} warm-up queries. Throughput: {THROUGHPUT_QUERIES:,} queries with"
        f" {CONCURRENCY} in flight over {CONCURRENCY} connections. The servers' own time per"
        f" query, over {SERVER_POINTS} points: Redis' `usec_per_call` of GEOSEARCH (INFO"
        " commandstats after CONFIG RESETSTAT) and the median `Execution Time` of `EXPLAIN"
        " (ANALYZE)` of the KNN statement. Client, Redis and PostgreSQL share the machine."
    )
