"""Redis SIGKILLed while a dispatcher holds entries, and restarted from its AOF: the held orders
are dispatched as soon as Redis is back (not after the claim timeout), and the API's pooled
connections opened before the kill do not turn requests into 503s afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from rideflow.redis import keys
from rideflow.workers.supervisor import ManagedRedis
from tests.auth import admin
from tests.conftest import BLR, offset, settings_for
from tests.fleet import add_driver, request_ride, wait_for_status
from tests.servers import Service, eventually, free_port

HELD = 6
CLAIM_IDLE_MS = 30_000
GROUP = keys.DISPATCH_GROUP


@pytest.mark.slow
async def test_orders_held_at_a_redis_kill_are_dispatched_once_it_is_back(
    tmp_path: Path, services: Callable[..., Service]
) -> None:
    redis_server = ManagedRedis(free_port(), tmp_path, durable=True).start()
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        settings = settings_for(
            redis_server.url, claim_idle_ms=CLAIM_IDLE_MS, ride_deadline_s=120.0
        )
        api = services("api", settings)
        dispatcher = services("dispatcher", settings, concurrency=4)
        async with httpx.AsyncClient(base_url=api.url, timeout=10, headers=admin(settings)) as c:
            for i in range(HELD):
                await add_driver(c, f"d{i}", offset(*BLR, north_m=100 * i))
            await eventually(lambda: _blocked_reader(redis), 10, "the dispatcher to wait")
            os.kill(dispatcher.pid, signal.SIGSTOP)
            rides = [await request_ride(c, BLR, f"rider-{i}") for i in range(HELD)]
            # Delivered to the stopped dispatcher (its blocked read may have taken the first):
            # its own pending entries, not handled when Redis dies.
            stream = keys.requests("blr")
            (consumer,) = [c["name"] for c in await redis.xinfo_consumers(stream, GROUP)]
            await redis.xreadgroup(GROUP, consumer, {stream: ">"})
            assert await _pending(redis, HELD)
            await _warm_pool(c, rides)  # many pooled API connections, all opened before the kill
            await redis.aclose()
            assert redis_server.proc is not None
            redis_server.proc.kill()
            redis_server.proc.wait(10)
            os.kill(dispatcher.pid, signal.SIGCONT)
            await eventually(
                _true(lambda: "retrying" in dispatcher.output()), 10, "the dispatcher to notice"
            )
            redis_server.start()  # same port, same AOF: the pending entries are back
            back = time.monotonic()
            redis = Redis.from_url(redis_server.url, decode_responses=True)

            # Well before the claim timeout: the dispatcher re-read its own entries.
            offered = [await wait_for_status(c, r, {"OFFERED"}, within=10) for r in rides]
            assert time.monotonic() - back < CLAIM_IDLE_MS / 1000 / 3
            assert sorted(o["driver"]["id"] for o in offered) == [f"d{i}" for i in range(HELD)]
            assert "reread=" not in dispatcher.output()  # still running: no summary yet

            # Every pooled connection of the API is used again: none answers 503.
            statuses = await _burst_of_reads(c, rides)
            assert set(statuses) == {200}, statuses
        assert dispatcher.stop() == 0
        assert f"reread={HELD}" in dispatcher.output(), dispatcher.output()
        assert (await redis.xpending(keys.requests("blr"), keys.DISPATCH_GROUP))["pending"] == 0
    finally:
        await redis.aclose()
        redis_server.stop()


async def _blocked_reader(redis: Redis) -> bool:
    clients = await redis.client_list()
    return any(c.get("name") == "rideflow-dispatcher" and c["cmd"] == "xreadgroup" for c in clients)


async def _pending(redis: Redis, n: int) -> bool:
    pending = await redis.xpending(keys.requests("blr"), keys.DISPATCH_GROUP)
    return int(pending["pending"]) == n


async def _warm_pool(c: httpx.AsyncClient, rides: list[str]) -> None:
    statuses = await _burst_of_reads(c, rides)
    assert set(statuses) == {200}, statuses


async def _burst_of_reads(c: httpx.AsyncClient, rides: list[str]) -> list[int]:
    """Many reads at once, so that the API takes many connections from its pool."""
    replies = await asyncio.gather(*(c.get(f"/v1/rides/{r}") for r in rides * 8))
    return [r.status_code for r in replies]


def _true(check: Callable[[], bool]) -> Callable[[], Any]:
    async def condition() -> bool:
        return check()

    return condition
