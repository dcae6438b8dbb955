"""Figure 22: what a Prometheus scrape of `/metrics` costs one API process, after traffic.

(a, the verdict) `rideflow api` as `rideflow up` runs it: `PROMETHEUS_MULTIPROC_DIR` shared with
a `rideflow dispatcher` process, so a scrape reads and sums both processes' files. (b, for
information) `rideflow api` alone, with its own registry. Each is first given TRAFFIC_REQUESTS
requests over the routes a running system sees (rides created, read, unknown; health, readiness,
job stats, unauthenticated calls, unmatched paths), so that the HTTP histogram holds the label
sets it would, and the dispatcher takes up the rides; then SCRAPES scrapes, one at a time on one
keep-alive connection (closed loop) with an ADMIN token, after a warm-up. The latency is the
client's, from the request's send to the last byte of the text; the text's size and its number of
series are reported beside it.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import (
    CENTRE,
    HOST,
    SEED,
    Figure,
    Processes,
    Server,
    auth_headers,
    brief,
    failures,
    json_auth_headers,
    point_in_disc,
    rideflow_env,
    say,
    start_api,
    wait_ready,
)
from bench.loadgen import LoadResult, RequestSpec, fixed_request, run_load
from rideflow.auth.principal import Role
from rideflow.metrics.directory import ENV, prepare

TRAFFIC_REQUESTS = 20_000
TRAFFIC_CONNECTIONS = 16
TRAFFIC_S = 10.0
SCRAPES = 500
SCRAPE_WARMUP_S = 1.0
SCRAPE_S = 30.0
TARGET_MS = 10.0


def traffic() -> list[RequestSpec]:
    """The mix: ride requests (202), reads that find something (200) or nothing (404), refusals
    (401, 403, 422) and unmatched paths, over the routes a running system sees most: about thirty
    label sets of the HTTP histogram. SQL is left out (the processes have no record here)."""
    rng = random.Random(SEED)
    admin, driver = auth_headers(Role.ADMIN), json_auth_headers(Role.DRIVER, "bench-d1")
    specs: list[RequestSpec] = []
    for i in range(64):
        pickup, dropoff = point_in_disc(rng, 9.5), point_in_disc(rng, 9.5)
        body = {
            "pickup": {"lat": pickup[0], "lng": pickup[1]},
            "dropoff": {"lat": dropoff[0], "lng": dropoff[1]},
        }
        headers = json_auth_headers(Role.CUSTOMER, f"rider-{i}")
        specs.append(("POST", "/v1/rides", orjson.dumps(body), headers))
    here = f"lat={CENTRE[0]}&lng={CENTRE[1]}"
    reads = [
        "/healthz",
        "/readyz",
        "/v1/rides/blr-doesnotexist",
        "/v1/rides/blr-doesnotexist/events",
        "/v1/deliveries/blr-doesnotexist",
        "/v1/offers/blr-doesnotexist-1",
        "/v1/drivers/nobody",
        "/v1/drivers/nobody/offers",
        "/v1/jobs/stats",
        "/v1/jobs?status=pending",
        "/v1/jobs/dead",
        "/v1/jobs/nope",
        f"/v1/admin/geosearch?city=blr&{here}&radius_km=1",
        "/v1/admin/leaderboard?city=blr",
        "/no/such/path",
    ]
    others: list[RequestSpec] = [(method, path, b"", admin) for method, path in
                                 (("GET", p) for p in reads)]  # fmt: skip
    json_admin = json_auth_headers(Role.ADMIN)
    others += [
        ("GET", "/v1/rides/blr-x", b"", {}),  # 401
        ("POST", "/v1/rides", b'{"pickup": {}}', json_admin),  # 422
        ("POST", "/v1/rides", b"{}", driver),  # 403
        ("POST", "/v1/jobs", b'{"task": "no-such-task"}', json_admin),  # 422
        ("PUT", "/v1/drivers/nobody/location", b'{"lat": 12.97, "lng": 77.59}', json_admin),
        ("POST", "/v1/offers/blr-x-1/accept", b'{"token": 1, "driver_id": "d"}', json_admin),
    ]
    for n in range(128):
        specs.append(others[n % len(others)])
    return specs


async def give_traffic(server: Server) -> LoadResult:
    specs = traffic()
    result = await run_load(
        HOST,
        server.port,
        lambda i: specs[i % len(specs)],
        mode="closed",
        connections=TRAFFIC_CONNECTIONS,
        duration_s=TRAFFIC_S,
        max_requests=TRAFFIC_REQUESTS,
    )
    say(f"  {server.name} traffic: {result.completed:,} requests, {result.status_counts}")
    return result


async def text_of(server: Server) -> str:
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=10) as client:
        reply = await client.get("/metrics", headers=auth_headers(Role.ADMIN))
    if reply.status_code != 200:
        raise RuntimeError(f"{server.name}: /metrics answered {reply.status_code}: {reply.text}")
    return reply.text


async def scrapes(server: Server) -> dict[str, Any]:
    """SCRAPES scrapes one at a time; the latencies and what the text held."""
    text = await text_of(server)
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    scrape = fixed_request("GET", "/metrics", b"", auth_headers(Role.ADMIN))
    # Warm-up scrapes first, on their own: counted within one run's `max_requests`, they used
    # up all of a fast process' SCRAPES (the lone API's row once read 0 scrapes).
    await run_load(
        HOST, server.port, scrape, mode="closed", connections=1, duration_s=SCRAPE_WARMUP_S
    )
    result = await run_load(
        HOST,
        server.port,
        scrape,
        mode="closed",
        connections=1,
        duration_s=SCRAPE_S,
        max_requests=SCRAPES,
    )
    say(f"  {server.name}: {brief(result, 200)}; {len(text) / 1024:.0f} KiB, {series} series")
    return {
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "scrapes": result.completed,
        "not_200": failures(result, 200),
        "kib": round(len(text) / 1024, 1),
        "series": series,
        "rideflow_families": len(
            {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE rideflow_")}
        ),
        "run": result.as_dict(),
    }


async def figure_metrics(procs: Processes, redis_url: str, tmp: Path) -> Figure:
    directory = prepare(tmp / "metrics")
    shared = {**rideflow_env(redis_url), ENV: str(directory)}
    up_api = await start_api(procs, "api-metrics-up", shared)
    argv = [sys.executable, "-m", "rideflow", "dispatcher", "--concurrency", "8"]
    dispatcher = procs.start("dispatcher-metrics", argv, shared)
    alone = await start_api(procs, "api-metrics-alone", rideflow_env(redis_url))
    try:

        async def dispatched() -> bool:
            # Its families are made at import: its files are there once it runs.
            return any(directory.glob(f"histogram_{dispatcher.pid}.db"))

        traffic_up = await give_traffic(up_api)
        traffic_alone = await give_traffic(alone)
        await wait_ready(dispatcher, dispatched, "the dispatcher to record into the directory")
        measured = {"up": await scrapes(up_api), "alone": await scrapes(alone)}
    finally:
        for server in (up_api, dispatcher, alone):
            procs.stop(server)
    figure = Figure(
        raw={
            **measured,
            "traffic": {"up": traffic_up.as_dict(), "alone": traffic_alone.as_dict()},
            "files": sorted(p.name for p in directory.glob("*.db")),
        }
    )
    up, one = measured["up"], measured["alone"]
    figure.cells["metrics_scrape"] = (
        f"p50 {up['p50_ms']:.2f} ms, p99 {up['p99_ms']:.2f} ms (max {up['max_ms']:.1f} ms;"
        f" {up['scrapes']} scrapes of {up['kib']:.0f} KiB, {up['series']} series, API and"
        f" dispatcher summed; {up['not_200']} not 200)",
        up["p50_ms"] <= TARGET_MS and up["not_200"] == 0,
    )
    figure.cells["metrics_alone"] = (
        f"p50 {one['p50_ms']:.2f} ms, p99 {one['p99_ms']:.2f} ms ({one['scrapes']} scrapes of"
        f" {one['kib']:.0f} KiB, {one['series']} series; {one['not_200']} not 200)",
        None,
    )
    return figure


def metrics_note() -> str:
    return (
        f"22. **`/metrics` scrape.** (a, the verdict) One `rideflow api` process with"
        f" `PROMETHEUS_MULTIPROC_DIR` shared with one `rideflow dispatcher`, as `rideflow up`"
        f" runs them; (b, for information) one `rideflow api` alone (its own registry). Each is"
        f" first given up to {TRAFFIC_REQUESTS:,} requests ({TRAFFIC_CONNECTIONS} connections,"
        f" at most {TRAFFIC_S:g} s) cycling over ride requests, reads of unknown rides,"
        f" deliveries, offers, drivers and jobs, job stats, health and readiness, calls without"
        f" credentials and unmatched paths, so that the HTTP histogram holds the label sets of a"
        f" running system (the dispatcher takes up the rides, writing its own files); then"
        f" {SCRAPES} scrapes one at a time on one keep-alive connection with an ADMIN token"
        f" (closed loop, after {SCRAPE_WARMUP_S:g} s of warm-up scrapes). Latency is the"
        f" client's, send to the last byte. The verdict is the median of (a): a scrape comes"
        f" every 15 s or so, and the tail of back-to-back scrapes on a shared machine measures"
        f" the machine (p99 is shown beside it). Each scrape renders on the API's event loop"
        f" and costs about its latency in CPU."
    )
