"""`/metrics` against real servers: the app under uvicorn with a dispatcher, a job worker and the
recorder in the test's own process (one registry, as a process alone has it), traffic driven
through the API and a socket, and every family checked to have moved by exactly what the traffic
did. The registry is the test process's, shared by the tests it runs: each check is a difference
between two scrapes, or a value the code under test had to write over a sentinel."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from rideflow.auth.principal import Role
from rideflow.config import RatePolicy, RateRoute, Settings
from rideflow.metrics import families
from rideflow.metrics.streams import watched_streams
from rideflow.record.backlog import backlog, recorder_streams
from rideflow.workers.recorder import Recorder
from tests.auth import bearer
from tests.conftest import BLR, Workers, offset, settings_for
from tests.fleet import add_driver, answer, request_ride, wait_for_status
from tests.metrics import Scrape, moved, scrape
from tests.record import record_database
from tests.servers import RedisServer, eventually
from tests.sockets import admin_client, opened, served

HUGE = RatePolicy(algorithm="token_bucket", limit=1_000_000, window_s=1)
TINY = RatePolicy(algorithm="fixed_window", limit=1, window_s=60)
HTTP = "rideflow_http_request_duration_seconds_count"
STAGE = "rideflow_dispatch_stage_duration_seconds"


def metrics_settings(redis_url: str, database_url: str) -> Settings:
    """Limits on (`tiny`: one request a minute on GET /v1/jobs/stats), the request log off (the
    metrics time requests without it, and the streams then stay still between samples)."""
    return settings_for(
        redis_url,
        database_url=database_url,
        rate_limit_enabled=True,
        rate_policies={"default": HUGE, "tiny": TINY},
        rate_routes=[RateRoute(method="GET", path="/v1/jobs/stats", policy="tiny")],
        request_log_enabled=False,
        metrics_sample_s=0.1,
        ride_offer_window_s=60.0,
    )


async def test_traffic_moves_every_family_by_what_it_did(
    flushed: RedisServer, redis: Redis, tmp_path: Path, workers: Workers
) -> None:
    async with record_database("sqlite", tmp_path) as url:
        settings = metrics_settings(flushed.url, url)
        async with served(settings) as base, admin_client(settings, base) as http:
            started = time.monotonic()
            before = await scrape(http)
            dispatcher = workers.dispatcher(settings)
            job_worker = workers.jobs(settings)
            connected = await drive(settings, base, http)
            ws = "rideflow_websocket_connections"

            async def socket_gone() -> Scrape | None:
                s = await scrape(http)
                return s if s.total(ws, role="DRIVER") == before.total(ws, role="DRIVER") else None

            after = await eventually(socket_gone, 10, "the socket's close to be counted")
            assert moved(before, connected, ws, role="DRIVER") == 1  # counted while open
            check_moved(before, after, time.monotonic() - started)
            await dispatcher.stop()
            await job_worker.stop()
            await recorded_and_sampled(settings, redis, http)


async def drive(settings: Settings, base: str, http: httpx.AsyncClient) -> Scrape:
    """Two rides (one rejected then accepted on a socket, one withdrawn), a job, a rate-limit
    denial, a 404 and a 405; the scrape taken while the driver's socket was open."""
    await add_driver(http, "D1", offset(*BLR, north_m=100))
    await add_driver(http, "D2", offset(*BLR, north_m=900))
    async with opened(settings, base, "D2", Role.DRIVER) as d2:
        connected = await scrape(http)
        # Ride 1: offered to D1 (nearest), rejected; offered to D2, accepted on the socket.
        ride = await request_ride(http, BLR, rider="c1")
        first = await wait_for_status(http, ride, {"OFFERED"})
        assert first["driver"]["id"] == "D1"
        offer = (await http.get(f"/v1/offers/{first['offer_id']}")).json()
        assert (await answer(http, offer, "reject")).status_code == 200
        pushed = (await d2.next("offer"))["data"]
        assert pushed["order_id"] == ride
        reply = await d2.request(
            "offer.accept", {"offer_id": pushed["offer_id"], "token": pushed["token"]}
        )
        assert reply["type"] == "ack", reply
    # Ride 2: offered to D1 again, then cancelled by its customer: the offer withdrawn.
    second = await request_ride(http, BLR, rider="c2")
    assert (await wait_for_status(http, second, {"OFFERED"}))["driver"]["id"] == "D1"
    assert (await http.post(f"/v1/rides/{second}/cancel")).status_code == 200
    # A job, run to completion.
    r = await http.post("/v1/jobs", json={"task": "test_work"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    async def done() -> bool:
        return bool((await http.get(f"/v1/jobs/{job_id}")).json()["status"] == "completed")

    await eventually(done, 15, "the job to complete")
    # An anonymous caller over the `tiny` limit: 401 (allowed, then refused by the route),
    # then 429 (denied before routing).
    async with httpx.AsyncClient(base_url=base) as anonymous:
        assert (await anonymous.get("/v1/jobs/stats")).status_code == 401
        assert (await anonymous.get("/v1/jobs/stats")).status_code == 429
    assert (await http.get("/no/such/path")).status_code == 404
    assert (await http.request("TRACE", "/v1/rides")).status_code == 405
    return connected


def check_moved(before: Scrape, after: Scrape, elapsed: float) -> None:
    """What `drive` did, family by family."""
    # HTTP: per route template and status, edge answers and unmatched paths included.
    assert moved(before, after, HTTP, method="POST", route="/v1/rides", status="202") == 2
    assert moved(before, after, HTTP, route="/v1/jobs/stats", status="401") == 1
    assert moved(before, after, HTTP, route="/v1/jobs/stats", status="429") == 1
    assert moved(before, after, HTTP, route="(unmatched)", status="404") == 1
    assert moved(before, after, HTTP, method="OTHER", route="/v1/rides", status="405") == 1
    assert moved(before, after, HTTP, route="/metrics", status="200") >= 2
    # Rate limits: the tiny policy's one allowance and one denial.
    decisions = "rideflow_rate_limit_decisions_total"
    assert moved(before, after, decisions, policy="tiny", decision="allow") == 1
    assert moved(before, after, decisions, policy="tiny", decision="deny") == 1
    assert moved(before, after, decisions, policy="default", decision="deny") == 0
    # Offers: three made, one rejected, one accepted, one withdrawn, none lapsed.
    offers = "rideflow_offers_total"
    for outcome, n in {
        "offered": 3, "rejected": 1, "accepted": 1, "withdrawn": 1, "lapsed": 0, "lost": 0,
    }.items():  # fmt: skip
        assert moved(before, after, offers, outcome=outcome) == n, outcome
    # Stages: two orders left the queue; three searches ended in an offer (ride 1's second
    # began when D1 rejected); one offer was accepted.
    for stage, n in {
        "queued_to_searching": 2, "searching_to_offered": 3, "offered_to_accepted": 1,
    }.items():  # fmt: skip
        assert moved(before, after, f"{STAGE}_count", stage=stage) == n, stage
        spent = moved(before, after, f"{STAGE}_sum", stage=stage)
        assert 0 <= spent <= n * elapsed, (stage, spent)
    # Jobs: started and completed once, its run timed.
    jobs = "rideflow_jobs_total"
    assert moved(before, after, jobs, task="test_work", status="started") == 1
    assert moved(before, after, jobs, task="test_work", status="completed") == 1
    runs = "rideflow_job_run_duration_seconds_count"
    assert moved(before, after, runs, task="test_work", outcome="ok") == 1
    # Nothing failed.
    assert moved(before, after, "rideflow_redis_errors_total") == 0
    assert moved(before, after, "rideflow_sql_errors_total") == 0


async def recorded_and_sampled(settings: Settings, redis: Redis, http: httpx.AsyncClient) -> None:
    """The recorder records what the traffic left; its backlog gauge, its lag histogram and the
    stream gauges it samples are written over sentinels and end equal to what Redis says."""
    streams = recorder_streams(settings)
    assert await backlog(redis, streams) > 0
    watched = watched_streams(settings)
    families.RECORDER_BACKLOG.set(-1)
    for w in watched:
        families.STREAM_LENGTH.labels(w.stream, w.city).set(-1)
    before = await scrape(http)
    recorder = Recorder(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:

        async def recorded() -> bool:
            return await backlog(redis, streams) == 0

        await eventually(recorded, 20, "the recorder to record everything")

        async def as_redis_says() -> Scrape | None:
            s = await scrape(http)
            if s.total("rideflow_recorder_backlog_entries") != 0:
                return None
            for w in watched:
                if s.total("rideflow_stream_length_entries", stream=w.stream, city=w.city) != (
                    await redis.xlen(w.key)
                ):
                    return None
                if not await redis.exists(w.key):
                    continue
                for group in await redis.xinfo_groups(w.key):
                    labels = {"stream": w.stream, "city": w.city, "group": group["name"]}
                    pending = s.total("rideflow_stream_pending_entries", **labels)
                    lag = s.total("rideflow_stream_lag_entries", **labels)
                    if (pending, lag) != (group["pending"], group["lag"]):
                        return None
            return s

        # The backlog is watched every 5 s: the second look sees it recorded.
        after = await eventually(as_redis_says, 15, "the gauges to say what Redis says")
    finally:
        stop.set()
        await task
    batches = recorder.counts["batches"]
    assert batches >= 1
    assert moved(before, after, "rideflow_recorder_lag_seconds_count") == batches
    assert after.total("rideflow_stream_length_entries", stream="requests", city="blr") >= 2
    assert after.labels_of("rideflow_stream_pending_entries")  # the groups were sampled


@pytest.mark.single_redis("it sets maxmemory on one server")
async def test_redis_and_sql_errors_are_counted_where_they_become_503(
    flushed: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    """Redis refusing writes (out of memory) and a database nobody listens on: each failed
    request is one error of its kind, by exception class."""
    from tests.servers import free_port

    dead_db = f"postgresql+asyncpg://nobody:nothing@127.0.0.1:{free_port()}/none"
    settings = settings_for(
        flushed.url,
        database_url=dead_db,
        database_auto_migrate=False,
        request_log_enabled=False,  # its flushes would fail (and count) too, at their own pace
    )
    async with served(settings) as base, admin_client(settings, base) as http:
        before = await scrape(http)
        await redis.config_set("maxmemory", 1)
        try:
            for _ in range(3):
                r = await http.post(
                    "/v1/rides",
                    json={"pickup": {"lat": BLR[0], "lng": BLR[1]},
                          "dropoff": {"lat": BLR[0] + 0.01, "lng": BLR[1]}},
                    headers=bearer(settings, "c1", Role.CUSTOMER),
                )  # fmt: skip
                assert r.status_code == 503, r.text
        finally:
            await redis.config_set("maxmemory", 0)
        for _ in range(2):
            r = await http.get("/v1/rides", params={"customer_id": "c1"})
            assert r.status_code == 503, r.text
        after = await scrape(http)
    assert moved(before, after, "rideflow_redis_errors_total") == 3
    assert moved(before, after, "rideflow_redis_errors_total", error="OutOfMemoryError") == 3
    assert moved(before, after, "rideflow_sql_errors_total") == 2


async def test_metrics_are_for_admin_only_and_an_admin_key_scrapes_as_a_bearer(
    flushed: RedisServer, tmp_path: Path
) -> None:
    async with record_database("sqlite", tmp_path) as url:
        settings = settings_for(flushed.url, database_url=url)
        async with served(settings) as base, admin_client(settings, base) as http:
            made = await http.post("/v1/admin/api-keys", json={"name": "prom", "role": "ADMIN"})
            weak = await http.post("/v1/admin/api-keys", json={"name": "m", "role": "CUSTOMER"})
            assert made.status_code == weak.status_code == 201
            async with httpx.AsyncClient(base_url=base) as anonymous:
                assert (await anonymous.get("/metrics")).status_code == 401
                for who in ("c1", "d1"):
                    role = Role.CUSTOMER if who == "c1" else Role.DRIVER
                    r = await anonymous.get("/metrics", headers=bearer(settings, who, role))
                    assert r.status_code == 403, r.text
                r = await anonymous.get(
                    "/metrics", headers={"Authorization": f"Bearer {weak.json()['key']}"}
                )
                assert r.status_code == 403, r.text
                # What Prometheus sends with `authorization: credentials_file:` holding the key.
                s = await scrape(anonymous, Authorization=f"Bearer {made.json()['key']}")
    # Every family is exported, with at least its help text, from the start.
    assert {f._name for f in families.FAMILIES} <= s.families
