"""Job workers as real processes: killed with `kill -9` mid-job, stopped with SIGTERM, two of them
sharing a job ten times longer than the claim timeout, cancels racing deliveries, twenty thousand
jobs through three workers killed and restarted."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.redis import keys
from tests.conftest import api_client
from tests.fleet import JOB_FINAL, submit, wait_final
from tests.jobtasks import EFFECTS, runs_key
from tests.servers import Service, eventually, post_many


async def test_a_worker_killed_mid_job_the_job_completes_elsewhere_once(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    victim = services("jobs", settings, name="victim", concurrency=4)
    async with api_client(settings) as c:
        job_id = await submit(c, payload={"seconds": 1.5})

        async def running() -> bool:
            # Its start recorded too: a first delivery runs before its start is written, and a
            # kill in between leaves no attempt to count (the heir's is then attempt 1).
            started = await redis.hget(keys.job(job_id), "status") == "processing"
            return started and bool(await redis.get(runs_key(job_id)))

        await eventually(running, 10, "the job to start on the victim")
        victim.kill9()
        services("jobs", settings, name="heir", concurrency=4)
        job = await wait_final(c, job_id, within=10)
    assert job["status"] == "completed" and job["retries"] == 0
    assert await redis.get(runs_key(job_id)) == "2"  # run again after the kill ...
    assert await redis.get(EFFECTS) == "1"  # ... its effect applied once
    assert [a["attempt"] for a in job["attempts"]] == [2]  # the killed attempt never finished
    assert await redis.hget(keys.job(job_id), "lost") == "1"


async def test_a_job_ten_times_longer_than_the_claim_timeout_runs_once(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    settings = settings.model_copy(update={"job_claim_idle_ms": 300})
    services("jobs", settings, name="a")
    services("jobs", settings, name="b")
    async with api_client(settings) as c:
        job_id = await submit(c, payload={"seconds": 3.0})
        job = await wait_final(c, job_id, within=15)
    assert job["status"] == "completed" and len(job["attempts"]) == 1
    assert await redis.get(runs_key(job_id)) == "1"


async def test_sigterm_lets_running_jobs_finish_and_leaves_the_rest(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    settings = settings.model_copy(update={"job_grace_s": 1.0})
    worker = services("jobs", settings, name="leaving", concurrency=2)
    async with api_client(settings) as c:
        short = await submit(c, payload={"seconds": 0.3})
        long = await submit(c, payload={"seconds": 4})

        async def both_running() -> bool:
            return bool(await redis.get(runs_key(short)) and await redis.get(runs_key(long)))

        await eventually(both_running, 10, "both jobs to start")
        assert worker.stop(signal.SIGTERM) == 0
        assert (await c.get(f"/v1/jobs/{short}")).json()["status"] == "completed"
        assert (await c.get(f"/v1/jobs/{long}")).json()["status"] == "processing"
        services("jobs", settings, name="heir")
        job = await wait_final(c, long)
    assert job["status"] == "completed" and await redis.get(EFFECTS) == "2"


async def test_cancels_racing_deliveries_a_cancelled_job_never_runs(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    """Workers run a job the moment its entry is delivered and record the start behind it, so a
    cancel must lose to any delivery: each job is either cancelled and never run, or refused
    (409) and completed once."""
    # Few slots and jobs of up to 30 ms: a backlog forms and drains, so cancels meet entries
    # still queued as well as entries just delivered.
    workers = [services("jobs", settings, name=f"w{i}", concurrency=4) for i in range(2)]
    rng = random.Random(5)
    outcomes: dict[str, int] = {}
    async with api_client(settings) as c:

        async def submit_and_cancel(jitter_ms: float, seconds: float) -> None:
            job_id = await submit(c, payload={"seconds": seconds})
            if jitter_ms:
                await asyncio.sleep(jitter_ms / 1000)  # spreads cancels across the delivery
            outcomes[job_id] = (await c.post(f"/v1/jobs/{job_id}/cancel")).status_code

        async def running(job_ids: list[str]) -> bool:
            return all([await redis.get(runs_key(j)) for j in job_ids])

        # Every slot busy: what is submitted now stays queued, and its cancel wins.
        blockers = [await submit(c, payload={"seconds": 1.0}) for _ in range(8)]
        await eventually(lambda: running(blockers), 20, "the blockers to run")
        await asyncio.gather(*(submit_and_cancel(0, 0) for _ in range(20)))
        # A job seen running: its cancel loses.
        for _ in range(3):
            job_id = await submit(c, payload={"seconds": 0.2})
            await eventually(lambda j=job_id: running([j]), 20, "the job to run")
            outcomes[job_id] = (await c.post(f"/v1/jobs/{job_id}/cancel")).status_code
        # The race itself, on whichever side each cancel falls.
        for _ in range(15):
            await asyncio.gather(
                *(
                    submit_and_cancel(rng.uniform(0, 3), rng.choice([0, 0.01, 0.03]))
                    for _ in range(20)
                )
            )
        jobs = {job_id: await wait_final(c, job_id) for job_id in outcomes}
    for worker in workers:
        assert worker.stop(signal.SIGTERM) == 0
    runs = {job_id: await redis.get(runs_key(job_id)) for job_id in outcomes}
    seen = Counter(outcomes.values())
    assert set(seen) == {200, 409} and seen[200] >= 20 and seen[409] >= 3, seen
    for job_id, code in outcomes.items():
        if code == 200:
            assert (jobs[job_id]["status"], runs[job_id]) == ("cancelled", None), job_id
        else:
            assert jobs[job_id]["status"] == "completed" and runs[job_id] == "1", job_id
            assert len(jobs[job_id]["attempts"]) == 1
    assert await redis.get(EFFECTS) == str(seen[409] + len(blockers))
    for queue in keys.job_queues():
        assert (await redis.xpending(queue, keys.JOBS_GROUP))["pending"] == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_twenty_thousand_jobs_three_workers_killed_and_restarted(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    """Every job reaches a final state, none is lost, none is completed twice."""
    n = 20_000
    api = services("api", settings)
    workers = [services("jobs", settings, name=f"w{i}", concurrency=32) for i in range(3)]
    rng = random.Random(11)
    bodies = [
        {"task": "test_work", "payload": {"seconds": rng.choice([0, 0, 0, 0.01])}} for _ in range(n)
    ]
    # A connection dropped under load is retried with the same key: one job.
    submitting = asyncio.ensure_future(
        post_many(api.port, "/v1/jobs", bodies, [f"k{i}" for i in range(n)])
    )
    kills = 0
    while kills < 8:
        await asyncio.sleep(0.7)
        victim = rng.randrange(3)
        workers[victim].kill9()
        kills += 1
        name = f"w{victim}-{kills}"
        # Started off the event loop: the submissions in flight keep going meanwhile.
        workers[victim] = await asyncio.to_thread(
            services, "jobs", settings, name=name, concurrency=32
        )
    answers = await submitting
    assert all(status == 202 for status, _ in answers), [a for a in answers if a[0] != 202][:3]
    ids = [str(orjson.loads(body)["job_id"]) for _, body in answers]

    async def all_final() -> list[dict[str, str]] | None:
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(keys.job(job_id), ["status"])
            statuses = [s for (s,) in await pipe.execute()]
        return None if any(s not in JOB_FINAL for s in statuses) else statuses

    statuses = await eventually(all_final, 120, "every job to finish", interval=0.5)
    assert Counter(statuses) == {"completed": n}
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.lrange(keys.job_attempts(job_id), 0, -1)
        attempts = await pipe.execute()
    completions = Counter(
        sum(orjson.loads(a)["outcome"] == "ok" for a in job_attempts) for job_attempts in attempts
    )
    assert completions == {1: n}  # each job completed exactly once
    assert await redis.get(EFFECTS) == str(n)
