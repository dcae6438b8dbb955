"""Background jobs through the app and job workers in-process: retries with backoff, dead letters,
timeouts, priorities, cancelling, bad input, the built-in tasks, the seed's two calls. (Workers
killed, stopped or racing in several processes: tests/e2e/test_job_workers.py.)"""

from __future__ import annotations

import random
import re
from datetime import datetime

import httpx
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.redis import keys
from tests.conftest import Workers, api_client
from tests.fleet import submit, wait_final
from tests.jobtasks import runs_key
from tests.servers import eventually


async def test_the_seed_calls_exactly_as_written(settings: Settings, workers: Workers) -> None:
    workers.jobs(settings)
    async with api_client(settings) as c:
        r = await c.post(
            "/submit-job",
            content=b'{\n"task": "send_email"\n}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 202, r.text
        assert list(r.json()) == ["job_id"]
        job_id = r.json()["job_id"]
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", job_id
        )
        await wait_final(c, job_id)
        status = (await c.get(f"/job-status/{job_id}")).json()
        assert status == {
            "job_id": job_id,
            "task": "send_email",
            "status": "completed",
            "retries": 0,
        }
        assert (await c.get("/job-status/nope")).status_code == 404


async def test_retries_with_growing_backoff_then_success_or_the_dead_letters(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    settings = settings.model_copy(update={"job_retry_base_s": 0.2, "job_retry_max_s": 5.0})
    workers.jobs(settings)
    async with api_client(settings) as c:
        twice = await submit(c, payload={"fail_times": 2})
        always = await submit(c, payload={"fail_times": 99})
        seed_flaky = await submit(c, "flaky", payload={"fail_times": 2})
        ok = await wait_final(c, twice)
        assert ok["status"] == "completed" and ok["retries"] == 2
        assert [a["outcome"] for a in ok["attempts"]] == ["error", "error", "ok"]
        assert ok["result"] == {"slept": 0.0}
        assert (await wait_final(c, seed_flaky))["retries"] == 2

        dead = await wait_final(c, always)
        assert dead["status"] == "failed" and dead["retries"] == 3
        assert len(dead["attempts"]) == 4 and "fails on purpose" in dead["error"]
        # Backoff: each wait at least base * 2^(n-1) * (1 - jitter/2), jitter < 1.
        gaps = [
            (_at(b["started_at"]) - _at(a["finished_at"]))
            for a, b in zip(dead["attempts"], dead["attempts"][1:], strict=False)
        ]
        assert [g >= 0.2 * 2**n * 0.5 for n, g in enumerate(gaps)] == [True] * 3, gaps
        assert gaps[2] > gaps[0]
        letters = (await c.get("/v1/jobs/dead")).json()["dead"]
        assert [d["job_id"] for d in letters] == [always]
        listed = (await c.get("/v1/jobs", params={"status": "failed"})).json()["jobs"]
        assert [j["job_id"] for j in listed] == [always]

        # Re-driven: pending again with its retries reset, and off the dead letters.
        redriven = await c.post(f"/v1/jobs/{always}/redrive")
        assert redriven.status_code == 200 and redriven.json()["retries"] == 0
        assert (await c.get("/v1/jobs/dead")).json()["dead"] == []
        assert (await c.post(f"/v1/jobs/{twice}/redrive")).status_code == 409
        again = await wait_final(c, always)
        assert again["status"] == "failed" and len(again["attempts"]) == 8

        stats = (await c.get("/v1/jobs/stats")).json()
        work = stats["tasks"]["test_work"]
        assert work["submitted"] == 2 and work["completed"] == 1 and work["failed"] == 2
        assert work["retried"] == 2 + 3 + 3 and work["run_ms_p50"] is not None
        assert stats["counts"]["failed"] == 1 and stats["counts"]["completed"] == 2


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_job_past_its_timeout_fails_that_attempt(
    settings: Settings, workers: Workers
) -> None:
    workers.jobs(settings)
    async with api_client(settings) as c:
        job_id = await submit(c, payload={"seconds": 5}, timeout=0.2, max_retries=1)
        job = await wait_final(c, job_id)
    assert job["status"] == "failed" and job["retries"] == 1
    assert [a["outcome"] for a in job["attempts"]] == ["timeout", "timeout"]
    assert job["error"] == "timed out after 0.2 s"


async def test_priorities_high_before_default_before_low(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    async with api_client(settings) as c:
        order = ["low", "default", "high"] * 10
        random.Random(3).shuffle(order)
        # Each job takes a few ms: one at a time, no two start in the same millisecond.
        ids = {await submit(c, priority=p, payload={"seconds": 0.003}): p for p in order}
        worker = workers.jobs(settings, concurrency=1, burst=True)  # the backlog is all there
        jobs = [await wait_final(c, job_id) for job_id in ids]

    async def finished() -> bool:
        return not worker.alive()

    await eventually(finished, 10, "the burst worker to end by itself")
    assert (await worker.stop())["completed"] == 30
    started = sorted(jobs, key=lambda j: j["started_at"])
    assert len({j["started_at"] for j in jobs}) == 30
    assert [j["priority"] for j in started] == ["high"] * 10 + ["default"] * 10 + ["low"] * 10


async def test_bad_input_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    r = await client.post("/v1/jobs", json={"task": "mine_bitcoin"})
    assert r.status_code == 422 and "known tasks: " in r.json()["detail"]
    assert "send_email" in r.json()["detail"] and r.json()["errors"][0]["field"] == "task"
    r = await client.post("/v1/jobs", json={"task": "send_email", "payload": {"to": "nobody"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "payload.to"
    r = await client.post(
        "/v1/jobs", json={"task": "update_driver_rating", "payload": {"rating": 9}}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "payload.driver_id"
    r = await client.post("/v1/jobs", json={"task": "send_email", "priority": "urgent"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "priority"
    r = await client.post(
        "/v1/jobs", json={"task": "send_email", "delay": 1, "run_at": "2030-01-01T00:00:00Z"}
    )
    assert r.status_code == 422
    r = await client.post("/submit-job", json={"task": "send_email", "extra": 1})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "extra"
    # Nothing stored (the request log's own entries, flushed on a timer, aside).
    assert [k for k in await redis.keys("*") if k != keys.request_log()] == []
    assert (await client.get("/v1/jobs/0000")).status_code == 404
    assert (await client.post("/v1/jobs/0000/cancel")).status_code == 404
    assert (await client.get("/v1/jobs", params={"status": "lost"})).status_code == 422


async def test_cancel_a_pending_job_but_not_a_running_one(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    settings = settings.model_copy(update={"job_grace_s": 0})  # the 30 s job is not waited for
    async with api_client(settings) as c:
        later = await submit(c, delay=30)
        assert (await c.get(f"/v1/jobs/{later}")).json()["status"] == "pending"
        cancelled = await c.post(f"/v1/jobs/{later}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert await redis.zcard(keys.jobs_delayed()) == 0
        again = await c.post(f"/v1/jobs/{later}/cancel")
        assert again.status_code == 409 and "is cancelled" in again.json()["detail"]

        queued = await submit(c, payload={"seconds": 30})
        workers.jobs(settings)

        async def running() -> bool:
            return bool((await c.get(f"/v1/jobs/{queued}")).json()["status"] == "processing")

        await eventually(running, 10, "the job to run")
        refused = await c.post(f"/v1/jobs/{queued}/cancel")
        assert refused.status_code == 409 and "is processing" in refused.json()["detail"]
        assert refused.headers["content-type"] == "application/problem+json"


async def test_the_built_in_tasks_do_what_they_say(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    from rideflow.redis.scripts import Scripts
    from tests.conftest import BLR
    from tests.fleet import add_driver, request_ride

    workers.jobs(settings)
    async with api_client(settings) as c:
        await add_driver(c, "rated", BLR)
        ride_id = await request_ride(c, BLR)
        assert (await c.post(f"/v1/rides/{ride_id}/cancel")).status_code == 200
        receipt = await wait_final(
            c, await submit(c, "trip_receipt", payload={"order_id": ride_id})
        )
        assert receipt["status"] == "completed"
        assert receipt["result"]["order_id"] == ride_id
        assert receipt["result"]["status"] == "CANCELLED"
        live = await request_ride(c, BLR, "rider-2")
        early = await submit(c, "trip_receipt", payload={"order_id": live}, max_retries=0)
        refused = await wait_final(c, early)
        assert refused["status"] == "failed" and "not finished yet" in refused["error"]

        job_id = await submit(
            c, "update_driver_rating", payload={"driver_id": "rated", "rating": 4}
        )
        rated = await wait_final(c, job_id)
        # Registered at 4.5, which counts as 5 ratings: (5 x 4.5 + 4) / 6.
        assert rated["result"] == {"driver_id": "rated", "rating": 4.42, "ratings": 1}
        # The same job run again (its worker died after the step): applied once.
        again = await Scripts.register(redis).driver_rate(
            keys=[keys.driver("blr", "rated"), keys.driver_ratings("blr", "rated")],
            args=[job_id, 4, 60],
        )
        assert again[0] == 0 and int(again[2]) == 1
        other = await submit(c, "update_driver_rating", payload={"driver_id": "rated", "rating": 5})
        assert (await wait_final(c, other))["result"]["rating"] == 4.5  # (22.5 + 4 + 5) / 7
        assert (await c.get("/v1/drivers/rated")).json()["rating"] == 4.5

        purged = await wait_final(c, await submit(c, "purge_expired"))
        assert purged["status"] == "completed"
        assert set(purged["result"]) == {"completed", "failed", "cancelled"}


async def test_jobs_whose_entries_share_an_id_across_queues_run_once_each(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    """Promoted together, a high and a default job get the same entry id in their streams."""
    from datetime import UTC, timedelta

    workers.jobs(settings)
    async with api_client(settings) as c:
        seconds, _ = await redis.time()
        at = (datetime.fromtimestamp(seconds, UTC) + timedelta(seconds=2)).isoformat()
        body = {"payload": {"seconds": 0.5}, "run_at": at}
        high = await submit(c, priority="high", **body)
        low = await submit(c, priority="default", **body)
        jobs = [await wait_final(c, high), await wait_final(c, low)]
    entries = {await redis.hget(keys.job(j), "entry") for j in (high, low)}
    assert len(entries) == 1  # the case this test is about did happen
    for job in jobs:
        assert job["status"] == "completed" and len(job["attempts"]) == 1
        assert await redis.get(runs_key(job["job_id"])) == "1"
