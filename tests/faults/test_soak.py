"""A soak: `rideflow up` (its managed Redis with AOF, the API, two dispatchers, the job worker,
the recorder into SQLite) under a moderate, steady load for `RIDEFLOW_SOAK_S` seconds (180 in
the fault suite; `make soak` runs an hour): orders accepted, dispatched and driven to their end
by simulated drivers, rides and drivers read, jobs submitted and run.

Checked: each process' resident memory stays within 10 % of its level after warm-up; no
consumer group's pending list keeps growing, and all drain once the load stops; once the orders
are finished and retention has passed, the Redis keyspace is back to its baseline (the keys made
before the first order) plus only keys that stay by design, each listed with its reason.
Retention is shortened for the soak (orders 15 s, job results 15 s) so that it passes within
the test."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from bench.order_flow import DriverCrew, OrderLoad, order_statuses, unsettled
from redis.asyncio import Redis

from rideflow.config import DEFAULT_POLICIES, RatePolicy, Settings
from tests.auth import TEST_JWT_SECRET, admin
from tests.conftest import env_of
from tests.e2e.test_resilience import children_of, gone, start_up
from tests.faults.soak import (
    STREAM_KEPT,
    Watch,
    beyond_baseline,
    growing,
    growth,
    keyspace,
    name_of,
    unexplained,
    why_left,
)
from tests.servers import eventually, free_port, wait_until

DURATION_S = float(os.environ.get("RIDEFLOW_SOAK_S", "180"))
RATE = float(os.environ.get("RIDEFLOW_SOAK_RATE", "25"))
"""Orders per second: moderate (about 1 % of what one API process accepts)."""
WARMUP_S = min(300.0, max(60.0, DURATION_S / 3))
SAMPLE_S = max(3.0, DURATION_S / 120)
RSS_BAND = 0.10
RETENTION_S = 15
DRIVERS = 60


def named(pids: list[int]) -> dict[str, int]:
    """The stack's processes by name (`api`, `dispatcher-1`, `redis-server`, ...)."""
    out: dict[str, int] = {}
    for pid in sorted(pids):
        name = name_of(pid)
        if name == "dispatcher":
            name = f"dispatcher-{sum(n.startswith('dispatcher') for n in out) + 1}"
        out[name] = pid
    return out


def soak_settings(api_port: int, redis_port: int, data_dir: Path) -> Settings:
    """`rideflow up`'s defaults, with retention short enough to pass within the test."""
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        data_dir=str(data_dir),
        port=api_port,
        jwt_secret=TEST_JWT_SECRET,
        log_level="WARNING",
        ride_offer_window_s=5.0,
        delivery_offer_window_s=5.0,
        offer_lease_grace_ms=1_000,
        order_retention_s=RETENTION_S,
        job_result_ttl_s=RETENTION_S,
        ride_deadline_s=30.0,
        # The default policies' state lives a window: windows of 10 s, not 60, so that it too
        # is gone soon after the load (the rates allowed are the defaults').
        rate_policies={
            "default": RatePolicy(algorithm="sliding_window", limit=100, window_s=10),
            "create": DEFAULT_POLICIES["create"],
            "positions": DEFAULT_POLICIES["positions"],
        },
    )


def up_environment(settings: Settings, redis_port: int) -> dict[str, str]:
    """The settings as `rideflow up` reads them, but for the Redis URL: it starts its own
    (with AOF) on `redis_port`, the one the settings name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEFLOW_")}
    env.update(env_of(settings))
    del env["RIDEFLOW_REDIS_URL"]
    env["RIDEFLOW_MANAGED_REDIS_PORT"] = str(redis_port)
    return env


@pytest.fixture
def rideflow_up(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, int]]]:
    """`rideflow up` with the soak's settings, ready: its settings and its processes by name.
    Stopped with Ctrl-C at the end, which must leave nothing running."""
    api_port, redis_port = free_port(), free_port()
    settings = soak_settings(api_port, redis_port, tmp_path)
    log = tmp_path / "up.log"
    up = start_up(up_environment(settings, redis_port), log)
    pids = named(children_of(up.pid))
    try:
        assert len(pids) == 6, pids  # redis-server, api, 2 dispatchers, jobs, recorder
        yield settings, pids
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
        for pid in pids.values():
            wait_until(lambda pid=pid: gone(pid), 20, f"process {pid} to exit")  # type: ignore[misc]
        assert code == 0, log.read_text()


@pytest.mark.slow
@pytest.mark.timeout(DURATION_S + 420)
async def test_soak_memory_keyspace_and_pending_lists_stay_flat(
    rideflow_up: tuple[Settings, dict[str, int]], report: Callable[[str], None]
) -> None:
    settings, pids = rideflow_up
    crew = DriverCrew(settings, DRIVERS, refresh_s=5.0)
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    stop, crew_stop = asyncio.Event(), asyncio.Event()
    crewing = None
    try:
        await crew.seed()
        baseline = await keyspace(redis)
        load = OrderLoad(settings.port, json_admin(settings), RATE, connections=4)
        # The crew runs to the very end: its drivers keep reporting positions, as live ones do.
        crewing = asyncio.create_task(crew.run(crew_stop))
        posting = asyncio.create_task(load.run(DURATION_S))
        side = asyncio.create_task(side_traffic(settings, load, stop))
        watch = Watch(redis, pids, [k for k, t in baseline.items() if t == "stream"])
        end = await watch.until(posting, SAMPLE_S)
        stop.set()
        side_errors = await side

        # Memory flat after warm-up; no pending list growing under load, each drained after.
        rises = {name: growth(s, WARMUP_S) for name, s in watch.rss.items()}
        grew = [g for g, s in watch.pending.items() if growing(s, WARMUP_S, end, floor=100)]
        await eventually(watch.drained, 60, "every pending list to drain", interval=0.5)

        # The keyspace: back to the baseline once orders are final and retention has passed.
        acked = load.acknowledged()

        async def finished() -> bool:
            return unsettled(await order_statuses(redis, "blr", acked)) == 0

        await eventually(finished, 60, "every order to reach a final state", interval=0.5)
        settled = time.monotonic()
        try:
            left = await eventually(
                lambda: beyond_baseline(redis, baseline), RETENTION_S + 90, "retention", 1
            )
        except AssertionError:
            leaks = await unexplained(redis, baseline)
            raise AssertionError(f"{len(leaks)} keys left past retention: {leaks[:20]}") from None
        returned = time.monotonic() - settled
        now = await keyspace(redis)
        lengths = {k: int(await redis.xlen(k)) for k, t in now.items() if t == "stream"}

        for line in summary(load, watch, crew, side_errors, rises, baseline, left, lengths):
            report(line)
        report(f"keyspace back to its baseline {returned:.0f} s after the last order finished")
        assert set(load.statuses()) == {202}, load.statuses()
        assert side_errors == 0
        too_big = {n: f"+{100 * r:.1f} %" for n, r in rises.items() if r > RSS_BAND}
        assert not too_big, f"memory grew past {100 * RSS_BAND:g} % after warm-up: {too_big}"
        assert not grew, f"pending lists growing: {grew}"
        assert not set(baseline) - set(now), sorted(set(baseline) - set(now))
        assert all(n <= STREAM_KEPT for n in lengths.values()), lengths
    finally:
        stop.set()
        crew_stop.set()
        if crewing is not None:
            await crewing
        await redis.aclose()


def summary(
    load: OrderLoad,
    watch: Watch,
    crew: DriverCrew,
    side_errors: int,
    rises: dict[str, float],
    baseline: dict[str, str],
    left: dict[str, str],
    lengths: dict[str, int],
) -> list[str]:
    """The soak's figures, a line each."""
    level = {n: int(s.between(WARMUP_S)[0] / 1024) for n, s in watch.rss.items()}
    return [
        f"soak {DURATION_S:g} s at {RATE:g} orders/s (warm-up {WARMUP_S:g} s, a sample every"
        f" {SAMPLE_S:g} s): {len(load.acknowledged())} orders acknowledged, answers"
        f" {dict(load.statuses())}; side traffic errors {side_errors}; {crew.stats.completed}"
        " trips completed",
        "RSS after warm-up (MiB) and its largest rise since: "
        + ", ".join(f"{n} {level[n]} +{100 * r:.1f} %" for n, r in sorted(rises.items())),
        "pending entries, highest per stream/group: "
        + ", ".join(
            f"{g} {max(v for _, v in s.points):g}" for g, s in sorted(watch.pending.items())
        ),
        f"keys beyond the baseline's {len(baseline)} after retention: "
        + "; ".join(f"{k} ({why_left(k)})" for k in sorted(left)),
        "stream lengths at the end: " + ", ".join(f"{k} {n}" for k, n in sorted(lengths.items())),
    ]


def json_admin(settings: Settings) -> dict[str, str]:
    return {"Content-Type": "application/json", **admin(settings)}


async def side_traffic(settings: Settings, load: OrderLoad, stop: asyncio.Event) -> int:
    """Besides the orders, twice a second: a ride read back, a driver read, a job submitted;
    how many of these were not answered 2xx."""
    rng = random.Random(3)
    errors = 0
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.port}", headers=admin(settings), timeout=10
    ) as client:
        while not stop.is_set():
            acked = load.acknowledged()
            calls = [
                client.get(f"/v1/drivers/crew-{rng.randrange(DRIVERS):04d}"),
                client.post("/v1/jobs", json={"task": "flaky", "payload": {"fail_rate": 0}}),
            ]
            if acked:
                calls.append(client.get(f"/v1/rides/{acked[-1]}"))
            for reply in await asyncio.gather(*calls, return_exceptions=True):
                if isinstance(reply, BaseException) or not reply.is_success:
                    errors += 1
            await asyncio.sleep(0.5)  # the side traffic's pace
    return errors
