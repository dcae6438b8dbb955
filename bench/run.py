"""`make bench`: measure the targets of the current issue on loopback and write the report.

Writes bench/RESULTS.md (the table and the method) and bench/out/results.json (the raw numbers).
Every server is started here on a free port against a throwaway redis-server, and each is stopped
by its own pid when the run ends, also on Ctrl-C. Run as `python -m bench.run` from the project
root; `--only FIGURE` (repeatable) measures some figures and leaves RESULTS.md alone.

This module holds figures 1 (`POST /v1/rides`) and 4 (the rate-limit check), the run and the
report; figures 2 and 3 are in `dispatch_bench.py`, 5 to 7 in `offers_bench.py`, 8 in
`contest_figure.py`, 9 in `jobs_bench.py`, 10 in `jobs_peer.py`, 11 to 13 (the recorder and
the request log) in `recorder_bench.py`, 14 in `menu_bench.py`, 15 in `nearest_bench.py`, 16 (the
JWT check) in `jwt_bench.py`, 17 (the WebSocket gateway) in `ws_bench.py`, 18 (the dashboard's
first render) in `dashboard_bench.py`, 19 (batch vs greedy) in `batch_bench.py`, 20 (Redis
SIGKILL under load) in `faults_bench.py`, 21 (more processes) in `procs_bench.py`, 22 (a
`/metrics` scrape) in `metrics_bench.py`, 23 (a Redis Cluster vs a single Redis) in
`cluster_bench.py`, the charts in `charts.py`, and what they share in `harness.py`. Every request
to a RideFlow process carries an access token (`harness.auth_headers`), signed with the secret
the processes are given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop

from bench import (
    batch_bench,
    charts,
    cluster_bench,
    contest_figure,
    dashboard_bench,
    dispatch_bench,
    faults_bench,
    jobs_bench,
    jobs_peer,
    jwt_bench,
    menu_bench,
    metrics_bench,
    nearest_bench,
    offers_bench,
    procs_bench,
    recorder_bench,
    ws_bench,
)
from bench.harness import (
    CORES,
    HOST,
    HUGE_LIMIT,
    LOGS,
    OUT,
    ROOT,
    SEED,
    WARMUP_S,
    CpuWatch,
    Figure,
    Processes,
    Server,
    SetupError,
    Target,
    auth_headers,
    bench_settings,
    brief,
    failures,
    free_port,
    json_auth_headers,
    latency_summary,
    make_fleet,
    point_in_disc,
    redis_url_of,
    rideflow_env,
    say,
    seed_drivers,
    services,
    start_api,
    start_redis,
    wait_http,
)
from bench.loadgen import LoadResult, MakeRequest, RequestSpec, run_load
from rideflow.api.ratelimit import RateLimiter
from rideflow.auth.principal import Role
from rideflow.config import Algorithm, RatePolicy, Settings
from rideflow.redis.connections import create_redis
from rideflow.redis.pipelined import PipelinedRedis
from rideflow.redis.scripts import Scripts

RESULTS_MD = ROOT / "bench" / "RESULTS.md"
RESULTS_JSON = OUT / "results.json"
COMMAND = "make bench"

# 1. POST /v1/rides
RIDE_ROUNDS = 3
RIDE_CONNECTIONS = 32
RIDE_DURATION_S = 5.0
RIDE_BODIES = 8192
RIDE_RADIUS_KM = 9.5
OPEN_RATE = 1500.0
OPEN_CONNECTIONS = 32
OPEN_DURATION_S = 10.0
MAX_REQUESTS = 500_000

# 4. rate-limit check
LIMIT_ROUNDS = 3
LIMIT_DURATION_S = 4.0
LIMIT_MAX_REQUESTS = 40_000
LIMIT_PATH = "/v1/rides/blr-doesnotexist"
LIMIT_CALLS = 5000
LIMIT_WARM_CALLS = 200
ALGORITHMS: tuple[Algorithm, ...] = ("fixed_window", "sliding_window", "token_bucket")
FLEET_FIGURES = {"dispatch", "positions", "assign", "reject_next", "lapse"}


# ---------------------------------------------------------------------------------------------
# What is measured

TARGETS: dict[str, tuple[Target, ...]] = {
    "rides": (
        Target("rides_rate", "1. `POST /v1/rides`, one API process, saturation", ">= 3,000 req/s"),
        Target("rides_ratio", "1. the same, relative to bare FastAPI + `XADD`", ">= 85 %"),
        Target("rides_p99", "1. `POST /v1/rides` at 1,500 req/s offered", "p99 <= 10 ms"),
    ),
    "dispatch": (
        Target("dispatch_p50", "2. dequeue -> OFFERED (50k drivers, 500/s)", "p50 <= 5 ms"),
        Target("dispatch_p99", "2. dequeue -> OFFERED (50k drivers, 500/s)", "p99 <= 25 ms"),
        Target(
            "dispatch_all", "2. rides OFFERED / drivers with two rides; audit", "5,000 / 0; clean"
        ),
        Target("dispatch_queued", "2. queued -> OFFERED (information)", "-"),
    ),
    "positions": (
        Target("positions_rate", "3. positions, `POST /v1/drivers/locations`", ">= 25,000 /s"),
    ),
    "ratelimit": (
        Target("ratelimit_added", "4. rate-limit check added, end to end", "median <= 0.25 ms"),
        Target("ratelimit_call", "4. one `RateLimiter.hit` (information)", "-"),
    ),
    "assign": (
        Target(
            "assign_p50", "5. `POST /v1/delivery/assign`, 50k drivers, 300 req/s", "p50 <= 3 ms"
        ),
        Target(
            "assign_p99", "5. `POST /v1/delivery/assign`, 50k drivers, 300 req/s", "p99 <= 10 ms"
        ),
        Target("assign_all", "5. answers 200 / audit", "all / clean"),
        Target("assign_client", "5. the same, client side (information)", "-"),
    ),
    "reject_next": (
        Target("reject_p99", "6. reject -> next driver OFFERED (1,000 rides)", "p99 <= 500 ms"),
    ),
    "lapse": (
        Target(
            "lapse_two",
            "7. offer lapse lateness, one of the default two dispatchers killed -9",
            "<= 250 ms, every lapse",
        ),
        Target("lapse_one", "7. the same, a sole dispatcher killed -9 (information)", "-"),
        Target("lapse_away", "7. lapses due while no dispatcher ran (after a restart; info)", "-"),
    ),
    "contested": (
        Target("contest_double", "8. double assignments in contested attempts", "0"),
        Target(
            "contest_attempts",
            "8. contested reservation attempts, workers killed -9",
            ">= 1,000,000",
        ),
        Target("contest_flow", "8. what the attempts led to (information)", "-"),
    ),
    "jobs": (
        Target(
            "jobs_throughput",
            "9. jobs processed with status tracking, 2 workers",
            ">= 6,000 jobs/s",
        ),
        Target("jobs_submit_start", "9. submit -> start at 1,000 jobs/s", "p99 <= 5 ms"),
        Target(
            "jobs_kills",
            "9. 30 `kill -9` of workers under 1,000 jobs/s",
            "0 lost, 0 completed twice",
        ),
    ),
    "jobs_peer": (
        Target(
            "peer_p99",
            "10. submit -> start vs taskiq, 2 idle workers each, 2,000 jobs at 200/s",
            "RideFlow p99 <= taskiq p99",
        ),
        Target("peer_rounds", "10. the same, per round (information)", "-"),
    ),
    "recorder": (
        Target("recorder_sqlite", "11. recorder throughput into SQLite", ">= 5,000 events/s"),
        Target(
            "recorder_postgresql", "11. recorder throughput into PostgreSQL", ">= 10,000 events/s"
        ),
    ),
    "recorder_lag": (
        Target("lag_sqlite", "12. event -> row committed at 500 orders/s, SQLite", "p99 <= 1 s"),
        Target(
            "lag_postgresql", "12. event -> row committed at 500 orders/s, PostgreSQL", "p99 <= 1 s"
        ),
    ),
    "reqlog": (
        Target(
            "reqlog_ratio",
            "13. `POST /v1/rides` with the request log on, vs bare FastAPI + `XADD`",
            ">= 85 %",
        ),
    ),
    "menu": (
        Target(
            "menu_ratio",
            "14. `GET …/menu` req/s, one API process: Redis cache vs SQL (SQLite)",
            ">= 5x",
        ),
        Target("menu_latency", "14. the same, median latency (information)", "-"),
        Target("menu_call", "14. the read paths without HTTP (information)", "-"),
    ),
    "nearest": (
        Target(
            "nearest_redis",
            "15. nearest 10 of 50,000 drivers: Redis `GEOSEARCH` 1 km `ASC COUNT 10`",
            "- (information)",
        ),
        Target(
            "nearest_postgis",
            "15. the same: PostGIS KNN `ORDER BY geom <-> point LIMIT 10` (GiST), asyncpg",
            "- (information)",
        ),
        Target(
            "nearest_record",
            "15. the same: the record's `nearest()` (KNN + exact re-rank, SQLAlchemy)",
            "- (information)",
        ),
    ),
    "jwt": (
        Target(
            "jwt_added",
            "16. JWT check added to a request (a route with `AnyCaller` vs the same without)",
            "median <= 0.1 ms",
        ),
        Target(
            "jwt_verify", "16. one `AccessTokens.verify` (HS256), in process", "median <= 0.1 ms"
        ),
    ),
    "ws": (
        Target(
            "ws_sockets",
            "17. concurrent WebSocket sockets on one API process (its RSS growth each)",
            ">= 10,000, <= 50 KiB each",
        ),
        Target(
            "ws_offer_p99",
            "17. offer push: OFFERED committed -> driver's client, 10,000 sockets, 300 offers/s",
            "p99 <= 20 ms",
        ),
        Target(
            "ws_accept_p99",
            "17. `offer.accept` over the socket -> ACCEPTED committed",
            "p99 <= 10 ms",
        ),
        Target("ws_positions", "17. positions over sockets, one API process", ">= 25,000 /s"),
        Target(
            "ws_bare",
            "17. the same sockets on a bare Starlette endpoint, same uvicorn (information)",
            "-",
        ),
    ),
    "dashboard": (
        Target(
            "dashboard_render",
            "18. dashboard first render, 5,000 drivers, headless Chromium",
            "<= 1 s",
        ),
    ),
    "batch": (
        Target(
            "batch_tight",
            "19. mean pickup distance, batch vs greedy, supply 1.1x demand",
            "batch >= 15 % shorter",
        ),
        Target(
            "batch_loose",
            "19. the same at 2x supply",
            "batch no worse than greedy by more than 2 %",
        ),
        Target(
            "batch_ttfo",
            "19. time to first offer with batch (window 1 s)",
            "p95 <= window + 100 ms",
        ),
        Target("batch_solve", "19. one batch solved, at the cap", "<= 50 ms"),
    ),
    "faults": (
        Target(
            "faults_everysec",
            "20. Redis SIGKILL under 200 orders/s, AOF `everysec`: acknowledged orders lost",
            "reported; recovers",
        ),
        Target(
            "faults_always",
            "20. the same with `appendfsync always`",
            "0 lost; recovers",
        ),
        Target(
            "faults_recovery",
            "20. Redis answering again -> first order acknowledged (202), first offer",
            "<= 5 s",
        ),
    ),
    "procs": (
        Target(
            "procs_api",
            "21. `POST /v1/rides`, 2 API processes vs 1 (`--api-workers`), same run",
            ">= 1.6x",
        ),
        Target("procs_bound", "21. what bounds that ratio on this machine (information)", "-"),
        Target(
            "procs_dispatch",
            "21. dispatch throughput, 2 dispatchers vs 1 (`--dispatchers`), same run",
            "- (both reported)",
        ),
    ),
    "metrics": (
        Target(
            "metrics_scrape",
            "22. `/metrics` scrape, one API process of `rideflow up` (API + dispatcher summed),"
            " after traffic",
            "median <= 10 ms",
        ),
        Target("metrics_alone", "22. the same, an API process alone (information)", "-"),
    ),
    "cluster": (
        Target(
            "cluster_rides",
            "23. `POST /v1/rides` saturation, 3-master Redis Cluster vs single Redis, same run",
            "cluster >= 0.8x single",
        ),
        Target(
            "cluster_dispatch_p50",
            f"23. dequeue -> OFFERED p50 ({cluster_bench.DRIVERS:,} drivers, 500/s), cluster vs"
            " single",
            "cluster <= 1.2x single",
        ),
        Target(
            "cluster_dispatch_p99",
            f"23. dequeue -> OFFERED p99 ({cluster_bench.DRIVERS:,} drivers, 500/s), cluster vs"
            " single",
            "cluster <= 1.2x single",
        ),
        Target(
            "cluster_positions",
            "23. positions ingested, cluster vs single",
            "cluster >= 0.8x single",
        ),
    ),
}


async def measure(name: str, run: Awaitable[Figure], procs: Processes) -> Figure:
    """Run one figure; a failure becomes NOT met with its reason, a setup failure stops all."""
    say(f"== figure {name}")
    started = time.perf_counter()
    cpu = CpuWatch(procs)
    try:
        figure = await run
    except SetupError:
        raise
    except Exception as exc:
        traceback.print_exc()
        figure = Figure(raw={"error": f"{type(exc).__name__}: {exc}"})
    reason = figure.raw.get("error", "not measured")
    for target in TARGETS[name]:
        figure.cells.setdefault(target.key, (f"failed: {reason}", False))
    figure.raw["elapsed_s"] = round(time.perf_counter() - started, 1)
    figure.raw["cpu"] = cpu.shares()
    say(f"  cpu: {figure.raw['cpu']}")
    return figure


async def start_baseline(procs: Processes, redis_url: str) -> Server:
    """The bare FastAPI + XADD app, served the way `rideflow api` serves (uvloop, httptools)."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", HOST]
    argv += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    argv += ["--no-access-log", "--log-level", "warning"]
    server = procs.start("baseline", argv, rideflow_env(redis_url), port)
    await wait_http(server)
    return server


# ---------------------------------------------------------------------------------------------
# 1. POST /v1/rides


def ride_requests() -> MakeRequest:
    """Ride requests, each body with its own rider and pickup, cycling over RIDE_BODIES; each
    carries its rider's own access token (a CUSTOMER acts only as themselves)."""
    rng = random.Random(SEED)
    specs: list[RequestSpec] = []
    for i in range(RIDE_BODIES):
        pickup, dropoff = point_in_disc(rng, RIDE_RADIUS_KM), point_in_disc(rng, RIDE_RADIUS_KM)
        body = {
            "rider_id": f"rider-{i}",
            "pickup": {"lat": pickup[0], "lng": pickup[1]},
            "dropoff": {"lat": dropoff[0], "lng": dropoff[1]},
        }
        headers = json_auth_headers(Role.CUSTOMER, f"rider-{i}")
        specs.append(("POST", "/v1/rides", orjson.dumps(body), headers))

    def make(i: int) -> RequestSpec:
        return specs[i % RIDE_BODIES]

    return make


async def saturate(server: Server, make: MakeRequest) -> LoadResult:
    """Closed loop: RIDE_CONNECTIONS connections, each sending as soon as it has an answer."""
    result = await run_load(
        HOST,
        server.port,
        make,
        mode="closed",
        connections=RIDE_CONNECTIONS,
        duration_s=RIDE_DURATION_S,
        warmup_s=WARMUP_S,
        max_requests=MAX_REQUESTS,
    )
    say(f"  {server.name}: {brief(result, 202)}")
    return result


async def figure_rides(procs: Processes, redis_url: str) -> Figure:
    """Saturation against RideFlow and the baseline in turn, then latency at a fixed rate."""
    make = ride_requests()
    api = await start_api(procs, "api-rides", rideflow_env(redis_url))
    baseline = await start_baseline(procs, redis_url)
    ours: list[LoadResult] = []
    theirs: list[LoadResult] = []
    try:
        for _ in range(RIDE_ROUNDS):
            ours.append(await saturate(api, make))
            theirs.append(await saturate(baseline, make))
        procs.stop(baseline)
        steady = await run_load(
            HOST,
            api.port,
            make,
            mode="open",
            rate=OPEN_RATE,
            connections=OPEN_CONNECTIONS,
            duration_s=OPEN_DURATION_S,
            warmup_s=WARMUP_S,
            max_requests=int(OPEN_RATE * (OPEN_DURATION_S + WARMUP_S)) + 1,
        )
        say(f"  {api.name} at {OPEN_RATE:,.0f} req/s offered: {brief(steady, 202)}")
    finally:
        procs.stop(baseline)
        procs.stop(api)
    figure = rides_figure(ours, theirs, steady)
    figure.samples["1. POST /v1/rides at 1,500 req/s (client)"] = steady.latencies_ms
    return figure


def rides_figure(ours: list[LoadResult], theirs: list[LoadResult], steady: LoadResult) -> Figure:
    """Medians over rounds, the ratio to the baseline, and the fixed-rate percentiles."""
    ours_rate = statistics.median(r.throughput for r in ours)
    theirs_rate = statistics.median(r.throughput for r in theirs)
    ratio = ours_rate / theirs_rate if theirs_rate else 0.0
    bad_ours = sum(failures(r, 202) for r in ours)
    bad_theirs = sum(failures(r, 202) for r in theirs)
    bad_steady = failures(steady, 202)
    rounds = ", ".join(f"{r.throughput:,.0f}" for r in ours)
    base_rounds = ", ".join(f"{r.throughput:,.0f}" for r in theirs)
    figure = Figure(
        raw={
            "rideflow_rounds": [r.as_dict() for r in ours],
            "baseline_rounds": [r.as_dict() for r in theirs],
            "fixed_rate": steady.as_dict(),
            "rideflow_median_rps": round(ours_rate, 1),
            "baseline_median_rps": round(theirs_rate, 1),
            "ratio": round(ratio, 4),
        }
    )
    figure.cells["rides_rate"] = (
        f"{ours_rate:,.0f} req/s (median of {rounds}); {bad_ours} not 202",
        ours_rate >= 3000 and bad_ours == 0,
    )
    figure.cells["rides_ratio"] = (
        f"{100 * ratio:.1f} % (baseline {theirs_rate:,.0f} req/s, median of {base_rounds};"
        f" {bad_theirs} not 202)",
        ratio >= 0.85 and bad_ours == 0,
    )
    figure.cells["rides_p99"] = (
        f"p99 {steady.p99_ms:.2f} ms (p50 {steady.p50_ms:.2f}, p99.9 {steady.p999_ms:.2f},"
        f" max {steady.max_ms:.1f} ms; {steady.throughput:,.0f} req/s done; {bad_steady} not 202)",
        steady.p99_ms <= 10 and bad_steady == 0,
    )
    return figure


# ---------------------------------------------------------------------------------------------
# 4. rate-limit check


async def check_limiting(server: Server, *, limited: bool) -> None:
    """The 404 path answers 404, with RateLimit headers exactly when limits are on."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=5) as client:
        reply = await client.get(LIMIT_PATH, headers=auth_headers(Role.ADMIN))
    if reply.status_code != 404 or ("ratelimit" in reply.headers) != limited:
        raise RuntimeError(
            f"{server.name}: GET {LIMIT_PATH} gave {reply.status_code} with headers "
            f"{dict(reply.headers)}; expected 404 {'with' if limited else 'without'} RateLimit"
        )


async def sequential_404(server: Server) -> LoadResult:
    """One request at a time against the 404 path, so each latency is the request's own
    (an open-loop schedule would add the generator's millisecond timer granularity)."""

    headers = auth_headers(Role.ADMIN)

    def make(_i: int) -> RequestSpec:
        return ("GET", LIMIT_PATH, b"", headers)

    result = await run_load(
        HOST,
        server.port,
        make,
        mode="closed",
        connections=1,
        duration_s=LIMIT_DURATION_S,
        warmup_s=WARMUP_S,
        max_requests=LIMIT_MAX_REQUESTS,
    )
    say(f"  {server.name}: {brief(result, 404)}")
    return result


async def limits_end_to_end(procs: Processes, redis_url: str) -> dict[str, Any]:
    """Two API processes, limits on and off, measured in turn, one request at a time."""
    on = await start_api(procs, "api-limits-on", rideflow_env(redis_url, rate_limit=True))
    off = await start_api(procs, "api-limits-off", rideflow_env(redis_url, rate_limit=False))
    runs: dict[str, list[LoadResult]] = {"on": [], "off": []}
    try:
        await check_limiting(on, limited=True)
        await check_limiting(off, limited=False)
        for _ in range(LIMIT_ROUNDS):
            runs["on"].append(await sequential_404(on))
            runs["off"].append(await sequential_404(off))
    finally:
        procs.stop(on)
        procs.stop(off)
    p50 = {side: statistics.median(r.p50_ms for r in rs) for side, rs in runs.items()}
    return {
        "p50_on_ms": round(p50["on"], 4),
        "p50_off_ms": round(p50["off"], 4),
        "added_ms": round(p50["on"] - p50["off"], 4),
        "round_differences_ms": [
            round(a.p50_ms - b.p50_ms, 4) for a, b in zip(runs["on"], runs["off"], strict=True)
        ],
        "too_many_requests": sum(r.status_counts.get(429, 0) for r in runs["on"]),
        "not_404": sum(failures(r, 404) for rs in runs.values() for r in rs),
        "runs": {side: [r.as_dict() for r in rs] for side, rs in runs.items()},
    }


async def limits_in_process(redis_url: str) -> dict[str, dict[str, float]]:
    """Sequential `RateLimiter.hit` calls per algorithm, each timed on its own."""
    policies = {a: RatePolicy(algorithm=a, limit=HUGE_LIMIT, window_s=60) for a in ALGORITHMS}
    settings = Settings(
        redis_url=redis_url, rate_policies=policies, rate_routes=[], rate_default_policy=None
    )
    redis = PipelinedRedis(redis_url, "bench-limits")  # as the API's limiter connects
    limiter = RateLimiter(Scripts.register(redis), settings)
    out: dict[str, dict[str, float]] = {}
    try:
        for algorithm in ALGORITHMS:
            client = f"bench-{algorithm}"
            for _ in range(LIMIT_WARM_CALLS):
                await limiter.hit(algorithm, client)
            times_ms, refused = [], 0
            for _ in range(LIMIT_CALLS):
                t0 = time.perf_counter_ns()
                decision = await limiter.hit(algorithm, client)
                times_ms.append((time.perf_counter_ns() - t0) / 1e6)
                refused += not decision.allowed
            if refused:
                raise RuntimeError(f"{algorithm}: {refused} of {LIMIT_CALLS} hits refused")
            out[algorithm] = latency_summary(times_ms)
    finally:
        await redis.aclose()
    return out


async def figure_ratelimit(procs: Processes, redis_url: str) -> Figure:
    """End to end (the verdict) and in process (for information)."""
    e2e = await limits_end_to_end(procs, redis_url)
    say(f"  added p50 {e2e['added_ms']:.3f} ms (rounds {e2e['round_differences_ms']})")
    calls = await limits_in_process(redis_url)
    say(f"  in process: {calls}")
    figure = Figure(raw={"end_to_end": e2e, "in_process": calls})
    clean = e2e["too_many_requests"] == 0 and e2e["not_404"] == 0
    figure.cells["ratelimit_added"] = (
        f"{e2e['added_ms']:+.3f} ms (p50 {e2e['p50_on_ms']:.3f} ms on vs"
        f" {e2e['p50_off_ms']:.3f} ms off; {e2e['too_many_requests']} of them 429,"
        f" {e2e['not_404']} not 404)",
        e2e["added_ms"] <= 0.25 and clean,
    )
    figure.cells["ratelimit_call"] = (
        "; ".join(
            f"{a}: median {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms" for a, s in calls.items()
        ),
        None,
    )
    return figure


# ---------------------------------------------------------------------------------------------
# The run


async def flush(redis_url: str) -> None:
    """Empty the throwaway Redis or cluster (figure 1 leaves queued rides a dispatcher would
    pick up)."""
    client = create_redis(bench_settings(redis_url), "bench-flush")
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def run_figures(
    procs: Processes, redis: Server, tmp: Path, only: set[str]
) -> dict[str, Figure]:
    """Measure the selected figures; drivers are seeded once for figures 2, 3 and 5 to 7, and
    figures 8, 20 and 23 have Redis servers of their own."""
    url = redis_url_of(redis)
    figures: dict[str, Figure] = {}
    if "rides" in only:
        figures["rides"] = await measure("rides", figure_rides(procs, url), procs)
    if only & FLEET_FIGURES:
        await flush(url)
        fleet = make_fleet()
        async with services(url) as svc:
            say(f"== seeding {len(fleet):,} online drivers")
            seconds = await seed_drivers(svc, fleet)
            say(f"  seeded in {seconds:.1f} s")
            if "dispatch" in only:
                figures["dispatch"] = await measure(
                    "dispatch", dispatch_bench.figure_dispatch(procs, svc, url), procs
                )
                figures["dispatch"].raw["seed_s"] = round(seconds, 1)
            if "positions" in only:
                figures["positions"] = await measure(
                    "positions", dispatch_bench.figure_positions(procs, url, fleet), procs
                )
            for name, run in (
                ("assign", offers_bench.figure_assign),
                ("reject_next", offers_bench.figure_reject_next),
                ("lapse", offers_bench.figure_lapse),
            ):
                if name in only:
                    figures[name] = await measure(name, run(procs, svc, url), procs)
    if "ratelimit" in only:
        figures["ratelimit"] = await measure("ratelimit", figure_ratelimit(procs, url), procs)
    for name, own_redis in (
        ("contested", contest_figure.figure_contest),
        ("faults", faults_bench.figure_faults),  # Redis servers it kills
        ("cluster", cluster_bench.figure_cluster),  # a single Redis and a cluster of its own
    ):
        if name in only:
            figures[name] = await measure(name, own_redis(procs, tmp), procs)
    if "jobs" in only:
        await flush(url)
        figures["jobs"] = await measure("jobs", jobs_bench.figure_jobs(procs, url), procs)
    if "jobs_peer" in only:
        await flush(url)
        figures["jobs_peer"] = await measure(
            "jobs_peer", jobs_peer.figure_jobs_peer(procs, url), procs
        )
    for name, record_run in (
        ("recorder", recorder_bench.figure_throughput),
        ("recorder_lag", recorder_bench.figure_lag),
        ("reqlog", recorder_bench.figure_reqlog),
        ("procs", procs_bench.figure_procs),
        ("metrics", metrics_bench.figure_metrics),
    ):
        if name in only:
            await flush(url)
            figures[name] = await measure(name, record_run(procs, url, tmp), procs)
    if "menu" in only:
        await flush(url)
        figures["menu"] = await measure("menu", menu_bench.figure_menu(procs, url, tmp), procs)
    if "ws" in only:
        await flush(url)
        figures["ws"] = await measure("ws", ws_bench.figure_ws(procs, url), procs)
    if "nearest" in only:
        await flush(url)
        figures["nearest"] = await measure("nearest", nearest_bench.figure_nearest(url), procs)
    if "jwt" in only:
        figures["jwt"] = await measure("jwt", jwt_bench.figure_jwt(procs), procs)
    if "dashboard" in only:
        await flush(url)
        figures["dashboard"] = await measure(
            "dashboard", dashboard_bench.figure_dashboard(procs, url, tmp), procs
        )
    if "batch" in only:
        await flush(url)
        figures["batch"] = await measure("batch", batch_bench.figure_batch(procs, url), procs)
    return {name: figures[name] for name in TARGETS if name in figures}


def measure_all(only: set[str]) -> tuple[dict[str, Figure], dict[str, float]]:
    """Start the throwaway Redis, run the figures, and stop every process we started; also
    returns the CPU shares of the whole run."""
    procs = Processes(LOGS)
    cpu = CpuWatch(procs)
    with (
        tempfile.TemporaryDirectory(prefix="rideflow-bench-") as tmp,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        try:
            redis = start_redis(procs, Path(tmp))
            return runner.run(run_figures(procs, redis, Path(tmp), only)), cpu.shares()
        finally:
            procs.stop_all()  # before the Redis directory goes


def interrupt(signum: int, _frame: object) -> None:
    """SIGTERM ends the run the way Ctrl-C does, so that every process gets stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------------------------
# The report


def command_output(argv: list[str]) -> str:
    """A command's stdout, stripped; empty when it fails."""
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def proc_field(path: str, name: str) -> str:
    """The value of the first `name:` line of a /proc file."""
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return "unknown"


def machine() -> dict[str, str]:
    """The machine, the software versions and the code measured."""
    os_release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    redis_version = command_output(["redis-server", "--version"])
    version = next((w[2:] for w in redis_version.split() if w.startswith("v=")), redis_version)
    commit = command_output(["git", "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "status", "--porcelain", "--", "src"])
    mem_gib = int(proc_field("/proc/meminfo", "MemTotal").split()[0]) / 1024**2
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": proc_field("/proc/cpuinfo", "model name"),
        "ram": f"{mem_gib:.1f} GiB",
        "os": f"{os_release.get('PRETTY_NAME', 'unknown').strip(chr(34))}, {platform.system()}"
        f" {platform.release()}",
        "python": platform.python_version(),
        "redis_server": version,
        "commit": f"{commit}{' with uncommitted changes in src/' if dirty else ''}",
    }


def cpu_line(figures: dict[str, Figure], whole: dict[str, float]) -> str:
    """How busy the machine was with other work while measuring."""
    parts = [f"{name} {f.raw['cpu']['other_processes_pct']:g} %" for name, f in figures.items()]
    return (
        f"CPU taken by processes outside the benchmark, as a share of all {CORES} cores:"
        f" {whole['other_processes_pct']:g} % over the whole run ({', '.join(parts)});"
        f" stolen by the hypervisor: {whole['steal_pct']:g} %. Such load competes with the"
        " servers measured."
    )


def table(figures: dict[str, Figure]) -> list[str]:
    """The results table in Markdown."""
    lines = ["| figure | target | measured | verdict |", "|---|---|---|---|"]
    for name, figure in figures.items():
        for target in TARGETS[name]:
            text, met = figure.cells[target.key]
            verdict = "info" if met is None else "met" if met else "**NOT met**"
            cell = text.replace("|", "\\|")
            lines.append(f"| {target.figure} | {target.target} | {cell} | {verdict} |")
    return lines


def method_notes(figures: dict[str, Figure]) -> list[str]:
    """How each figure was measured."""
    notes = ["## Method", ""]
    notes += [
        "All traffic is on 127.0.0.1. A throwaway `redis-server --save '' --appendonly no` on a"
        " free port holds everything; every RideFlow process is started by the benchmark with"
        " `RIDEFLOW_LOG_LEVEL=WARNING`, `RIDEFLOW_DRIVER_STALE_S=300`, `RIDEFLOW_RATE_ROUTES=[]`"
        " and a token-bucket `default` policy of 10^9 requests/s, rate limiting off unless"
        " stated, and an explicit `RIDEFLOW_JWT_SECRET`; every request to them carries an access"
        " token signed with it (`bench/harness.py`: ADMIN for set-up, batch positions, jobs and"
        " assignments; the rider's or the driver's own token where one person acts)."
        " HTTP load comes from `bench/loadgen.py` (keep-alive HTTP/1.1, one request in"
        " flight per connection) running in the benchmark process, so the load generator, the"
        f" server and Redis share the machine's {CORES} cores."
        " Percentiles are nearest-rank over every post-warmup request; open-loop latency is"
        " counted from each request's scheduled send time, so a stalled server cannot hide its"
        " queueing (no coordinated omission).",
        "",
    ]
    dispatch = figures.get("dispatch")
    seeded = (
        f" (seeding took {dispatch.raw['seed_s']} s)"
        if dispatch and "seed_s" in dispatch.raw
        else ""
    )
    notes += [
        f"1. **`POST /v1/rides`.** One `rideflow api` process (rate limiting off) and the bare"
        f" FastAPI + `XADD` app of `bench/baseline_app.py` (uvicorn, uvloop, httptools), both"
        f" started at once and measured strictly alternately, {RIDE_ROUNDS} rounds each: closed"
        f" loop, {RIDE_CONNECTIONS} connections, {WARMUP_S:g} s warmup + {RIDE_DURATION_S:g} s."
        f" Throughput is the median over rounds; the ratio is RideFlow's median over the"
        f" baseline's. Bodies cycle over {RIDE_BODIES:,} pre-built requests, each with its own"
        f" `rider_id`, pickup and dropoff uniformly within {RIDE_RADIUS_KM} km of the centre of"
        f" Bengaluru, and the rider's own CUSTOMER access token: RideFlow verifies it (figure"
        f" 16 measures what that adds), the baseline reads no token at all, so the comparison"
        f" charges RideFlow for authentication the baseline does not do."
        f" Any answer other than 202 counts as a failure. Then open loop at"
        f" {OPEN_RATE:,.0f} req/s offered, {OPEN_CONNECTIONS} connections, {WARMUP_S:g} s warmup"
        f" + {OPEN_DURATION_S:g} s.",
        dispatch_bench.dispatch_note(seeded),
        dispatch_bench.positions_note(),
        f"4. **Rate-limit check.** (a, the verdict) Two `rideflow api` processes, identical but"
        f" for `RIDEFLOW_RATE_LIMIT_ENABLED` (true/false), measured alternately, {LIMIT_ROUNDS}"
        f" rounds each, one request at a time on one connection (closed loop, so no timer"
        f" granularity enters the latencies), {WARMUP_S:g} s warmup +"
        f" {LIMIT_DURATION_S:g} s, against `GET {LIMIT_PATH}` (a 404 after one Redis read;"
        f" with limits on it still passes one token-bucket check, and no 429 is allowed). The"
        f" added latency is the median p50 with limits on minus the median p50 with them off;"
        f" a sample request checks the `RateLimit` headers are present exactly when on. Requests"
        f" carry an ADMIN token, verified once either way (by the limiter, which counts the user,"
        f" when on; by the route otherwise), so the difference is the limiter's."
        f" (b, for information) `RateLimiter.hit` called in this process {LIMIT_CALLS:,} times"
        f" in a row per algorithm (after {LIMIT_WARM_CALLS} warm-up calls), limit 10^9 per"
        f" 60 s so every hit is admitted; the time is the whole awaited call, Redis round trip"
        f" included.",
        offers_bench.assign_note(),
        offers_bench.reject_note(),
        offers_bench.lapse_note(),
        contest_figure.contest_note(),
        jobs_bench.jobs_note(),
        jobs_peer.jobs_peer_note(),
        menu_bench.menu_note(),
        nearest_bench.nearest_note(),
        jwt_bench.jwt_note(),
        ws_bench.ws_note(),
        dashboard_bench.dashboard_note(),
        batch_bench.batch_note(),
        faults_bench.faults_note(),
        procs_bench.procs_note(),
        metrics_bench.metrics_note(),
        cluster_bench.cluster_note(),
        "",
        "Raw numbers, per round, are in `bench/out/results.json`, every ride of figure 2 in"
        " `bench/out/dispatch_rides.csv`, the servers' logs in `bench/out/logs/`. The CPU"
        " shares above come from `/proc/stat` less the CPU time of this process and of every"
        " process it started.",
    ]
    return notes


def write_report(
    figures: dict[str, Figure], info: dict[str, str], when: datetime, extra: dict[str, Any]
) -> None:
    """RESULTS.md: when, where, how, the table, and the method."""
    lines = [
        "# RideFlow benchmark results",
        "",
        f"- Date: {when:%Y-%m-%d %H:%M} UTC; the whole run took {extra['total_s']:.0f} s.",
        f"- Machine: {info['nproc']} cores (nproc), {info['cpu']}, {info['ram']} RAM,"
        f" {info['os']}.",
        f"- Software: Python {info['python']}, redis-server {info['redis_server']}; RideFlow"
        f" commit {info['commit']}.",
        f"- Load average (1 min) before / after the run: {extra['load_before']:.2f} /"
        f" {extra['load_after']:.2f}.",
        f"- {cpu_line(figures, extra['cpu'])}",
        f"- Command: `{COMMAND}` (runs `python -m bench.run` from the project root).",
        "",
        "## Results",
        "",
        *table(figures),
        "",
        *charts.chart_lines(charts.CHARTS, RESULTS_MD.parent),
        *method_notes(figures),
        "",
    ]
    RESULTS_MD.write_text("\n".join(lines))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=list(TARGETS),
        help="measure only this figure (repeatable); RESULTS.md is then left alone",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, then write results.json and (for a full run) RESULTS.md."""
    args = parse_args(argv)
    only = set(args.only or TARGETS)
    signal.signal(signal.SIGTERM, interrupt)
    LOGS.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    figures, cpu = measure_all(only)
    extra = {
        "total_s": round(time.perf_counter() - started, 1),
        "cpu": cpu,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    info = machine()
    report = {
        "date": when.isoformat(timespec="seconds"),
        "command": COMMAND,
        "machine": info,
        **extra,
        "figures": {
            name: {
                "cells": {k: {"measured": t, "met": m} for k, (t, m) in f.cells.items()},
                **f.raw,
            }
            for name, f in figures.items()
        },
    }
    RESULTS_JSON.write_text(json.dumps(report, indent=2) + "\n")
    say("\n".join(["", *table(figures), "", f"total {extra['total_s']:.0f} s"]))
    if only == set(TARGETS):
        samples = {k: v for f in figures.values() for k, v in f.samples.items()}
        if charts.write_latency_chart(samples):
            say(f"wrote {charts.LATENCY_PNG.relative_to(ROOT)}")
        write_report(figures, info, when, extra)
        say(f"wrote {RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.relative_to(ROOT)}")
    return 0  # a target not met is a result, reported above, not a failure of the run


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; every process this run started has been stopped")
        sys.exit(130)
