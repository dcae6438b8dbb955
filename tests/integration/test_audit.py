"""`rideflow audit` finds every kind of breach it promises to, and passes a clean state."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.dispatch.audit import audit
from rideflow.redis import keys
from rideflow.redis.connections import sync_client
from tests.conftest import BLR, env_of
from tests.fleet import add_driver, request_ride


async def test_clean_state_passes_and_breaches_are_reported(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await add_driver(client, "d1", BLR)
    await add_driver(client, "d2", BLR)
    r1, r2 = await request_ride(client, BLR), await request_ride(client, BLR)
    assert await audit(redis, ["blr"]) == []
    # A queued ride whose stream entry is gone: nothing will ever search for it.
    r3 = await request_ride(client, BLR)
    (entry_id, _), *_ = await redis.xrevrange(keys.requests("blr"), count=1)
    await redis.xdel(keys.requests("blr"), entry_id)
    assert await audit(redis, ["blr"]) == [
        f"blr: order {r3} is QUEUED but neither queued nor due for another search"
    ]
    await redis.zadd(keys.retries("blr"), {r3: 0})
    assert await audit(redis, ["blr"]) == []

    # Forge what a double-assignment bug would leave behind.
    await redis.hset(keys.order("blr", r1), mapping={"status": "ACCEPTED", "driver": "d1"})
    await redis.hset(keys.order("blr", r2), mapping={"status": "PICKED_UP", "driver": "d1"})
    await redis.hset(keys.driver("blr", "d1"), "order", r1)
    await redis.hset(keys.driver("blr", "d2"), "order", r1)
    await redis.hset(keys.order("blr", "odd"), mapping={"status": "LIMBO"})
    await redis.hset(keys.order("blr", "lost"), mapping={"status": "DRIVER_ARRIVING"})
    # An offer nobody swept: pending past its deadline, its lease still held.
    now_s, _ = await redis.time()
    await redis.zadd(keys.offers_due("blr"), {f"{r2}-late": (now_s - 5) * 1000})
    await redis.set(keys.lease("blr", "d3"), f"7|{r2}|{r2}-late")
    found = "\n".join(await audit(redis, ["blr"]))
    assert "driver d1 has 2 active orders" in found
    assert f"order {r1} is held by 2 drivers" in found
    assert f"driver d2 holds order {r1}, which is ACCEPTED with driver d1" in found
    assert f"order {r2} names driver d1, who does not hold it" in found
    assert "driver d1 holds order" in found and "available pool" in found
    assert "order odd is in no known state ('LIMBO')" in found
    assert "order lost is DRIVER_ARRIVING with no driver" in found
    assert f"offer {r2}-late is still pending" in found and "after its deadline" in found
    assert f"driver d3 still holds a lease for offer {r2}-late" in found


def test_the_command_exits_1_on_a_breach_and_0_when_clean(settings: Settings) -> None:

    env = {**os.environ, **env_of(settings)}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rideflow", "audit"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    done = run()
    assert done.returncode == 0 and "audit: clean" in done.stdout, done.stdout + done.stderr
    client = sync_client(settings.redis_url or "")
    client.hset(keys.order("blr", "x"), mapping={"status": "ACCEPTED", "driver": "ghost"})
    client.close()
    done = run()
    assert done.returncode == 1
    assert "order x names driver ghost, who does not hold it" in done.stdout
