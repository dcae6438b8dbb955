"""Redis Cluster failover under load: the master holding a city is killed with SIGKILL while
rides pour in; its replica is promoted and RideFlow recovers by itself (no restart, no operator).

What an acknowledged ride can lose here is what Redis replication allows: a write the master
acknowledged but had not yet sent to its replica when it died. The test counts those (printed,
and the README says why) instead of pretending there are none."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rideflow.config import Settings
from rideflow.redis import keys
from rideflow.redis.connections import open_redis
from tests import auth
from tests.cluster import ClusterNode, RedisClusterServer
from tests.conftest import BLR, settings_for
from tests.e2e.test_concurrency import register_drivers, scatter
from tests.servers import Service, eventually

RATE_PER_S = 100
BEFORE_KILL_S = 3.0
AFTER_PROMOTION_S = 4.0


@dataclass
class Load:
    """Rides sent at a steady rate: each answer, and when it was sent."""

    answers: list[tuple[float, int, str]] = field(default_factory=list)
    running: bool = True

    async def pour(self, url: str, headers: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
            n = 0
            start = time.monotonic()
            tasks: set[asyncio.Task[None]] = set()
            while self.running:
                n += 1
                task = asyncio.create_task(self._one(http, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, start + n / RATE_PER_S - time.monotonic()))
            await asyncio.gather(*tasks)

    async def _one(self, http: httpx.AsyncClient, n: int) -> None:
        sent = time.monotonic()
        pickup = scatter(1, 1200, seed=n)[0]
        body = {
            "rider_id": f"r{n}",
            "pickup": {"lat": pickup[0], "lng": pickup[1]},
            "dropoff": {"lat": BLR[0], "lng": BLR[1]},
        }
        r = await http.post("/v1/rides", json=body, headers={"Idempotency-Key": f"k{n}"})
        ride = str(r.json().get("ride_id", "")) if r.status_code == 202 else ""
        self.answers.append((sent, r.status_code, ride))


def master_of(cluster: RedisClusterServer, key: str) -> tuple[ClusterNode, ClusterNode]:
    """The master serving `key`'s slot and its replica."""
    with cluster.nodes[0].client() as c:
        slot = int(c.cluster("keyslot", key))
        shards = c.execute_command("CLUSTER SHARDS")
    by_port = {n.port: n for n in cluster.nodes}
    for shard in shards:  # parsed by redis-py: {"slots": [lo, hi, ...], "nodes": [{...}]}
        ranges = [int(x) for x in shard["slots"]]
        if any(lo <= slot <= hi for lo, hi in zip(ranges[::2], ranges[1::2], strict=True)):
            nodes = shard["nodes"]
            master = next(by_port[int(n["port"])] for n in nodes if n["role"] == "master")
            replica = next(by_port[int(n["port"])] for n in nodes if n["role"] == "replica")
            return master, replica
    raise AssertionError(f"no shard serves slot {slot}")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.single_redis("it starts a Redis Cluster of its own, with a replica per master")
async def test_master_killed_under_load_replica_promoted_rideflow_recovers(
    tmp_path: Path, services: Callable[..., Service]
) -> None:
    cluster = RedisClusterServer(tmp_path / "cluster", masters=3, replicas=1).start()
    try:
        settings = settings_for(cluster.url, ride_deadline_s=120.0)
        await _failover(cluster, settings, services)
    finally:
        cluster.stop()


async def _failover(
    cluster: RedisClusterServer, settings: Settings, services: Callable[..., Any]
) -> None:
    api = services("api", settings)
    services("dispatcher", settings, concurrency=16)
    await register_drivers(api.port, [f"d{i}" for i in range(2000)], scatter(2000, 1200, seed=1))
    master, replica = master_of(cluster, keys.requests("blr"))
    load = Load()
    pouring = asyncio.create_task(load.pour(api.url, auth.admin(settings)))
    await asyncio.sleep(BEFORE_KILL_S)  # steady load before the kill (the rate's own pacing)
    killed_at = time.monotonic()
    master.kill(signal.SIGKILL)
    await eventually(
        lambda: asyncio.to_thread(lambda: replica.role() == "master"),
        30,
        "the replica to be promoted",
        0.05,
    )
    promoted_at = time.monotonic()
    await asyncio.sleep(AFTER_PROMOTION_S)  # load keeps flowing after the promotion
    load.running = False
    await pouring

    answers = sorted(load.answers)
    # (Requests in flight at the kill may be refused: those sent half a second before are not.)
    before = [a for a in answers if a[0] < killed_at - 0.5]
    after = [a for a in answers if a[0] >= promoted_at + 1.0]
    assert before and all(status == 202 for _, status, _ in before), [
        a for a in before if a[1] != 202
    ][:3]
    # Recovered by itself: a second after the promotion, every request is accepted again.
    assert after and all(status == 202 for _, status, _ in after), [
        a for a in after if a[1] != 202
    ][:5]
    refused = [status for sent, status, _ in answers if killed_at - 0.5 <= sent < promoted_at + 1.0]
    assert set(refused) <= {202, 503}, set(refused)

    redis = await open_redis(settings, "failover-test")
    try:
        acknowledged = [ride for _, status, ride in answers if status == 202]

        async def dispatched_after() -> bool:
            statuses = [await redis.hget(keys.order("blr", r), "status") for _, _, r in after]
            return all(s in {"OFFERED", "NO_DRIVER_FOUND"} for s in statuses)

        # Dispatch resumed on the promoted replica: rides accepted after it are offered.
        await eventually(dispatched_after, 60, "rides accepted after the failover to be offered")
        lost = [r for r in acknowledged if not await redis.exists(keys.order("blr", r))]
    finally:
        await redis.aclose()
    print(
        f"\nfailover: {len(acknowledged)} rides acknowledged, {len(lost)} lost with the master "
        f"(acknowledged but not yet replicated), {len(refused) - refused.count(202)} refused "
        f"with 503 between the kill and a second after the promotion "
        f"({promoted_at - killed_at:.1f} s)"
    )
    # What can be lost is bounded by what was acknowledged in the moment before the kill.
    assert len(lost) <= sum(1 for sent, s, _ in answers if s == 202 and sent >= killed_at - 1.0)
