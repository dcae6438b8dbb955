"""The request log: an entry per request (route template, status, latency, client, rate-limit
decision), sent in buffered pipelined batches, never in the request; flushed at shutdown."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from rideflow.config import RatePolicy
from rideflow.redis import keys
from tests.conftest import BLR, api_client, settings_for
from tests.fleet import request_ride
from tests.servers import RedisServer

HUB_READS = {"xread", "xrevrange", "subscribe"}
"""What an API process's WebSocket hub sends by itself: its event-stream reads and its
tracking-channel subscription."""


async def command_calls(redis: Redis) -> dict[str, int]:
    stats: dict[str, Any] = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def logged(redis: Redis) -> list[dict[str, str]]:
    return [f for _, f in await redis.xrange(keys.request_log())]


@pytest.mark.single_redis("it counts XADDs in one server's INFO commandstats")
async def test_requests_leave_entries_sent_only_when_the_buffer_is_flushed(
    flushed: RedisServer, redis: Redis
) -> None:
    # A flush only at shutdown: whatever reaches Redis during the requests was sent by them.
    settings = settings_for(flushed.url, request_log_flush_ms=600_000, request_log_buffer=10_000)
    async with api_client(settings) as c:
        before = await command_calls(redis)
        for _ in range(200):
            assert (await c.get("/healthz")).status_code == 200
        during = await command_calls(redis)
        assert await redis.exists(keys.request_log()) == 0
    after = await command_calls(redis)
    # 200 requests that touch no Redis sent nothing (the INFO and EXISTS above aside, and the
    # WebSocket hub's own background reads, which no request makes)...
    sent = {k: during.get(k, 0) - before.get(k, 0) for k in during if k not in HUB_READS}
    assert {k: v for k, v in sent.items() if v} == {"info": 1}
    # ...and the shutdown flushed all 200 entries, as XADDs only.
    entries = await logged(redis)
    assert len(entries) == 200 and after.get("xadd", 0) - during.get("xadd", 0) == 200
    entry = entries[0]
    assert (entry["method"], entry["route"], entry["status"]) == ("GET", "/healthz", "200")
    assert int(entry["latency_us"]) > 0 and int(entry["at"]) > 1_700_000_000_000_000
    assert entry["policy"] == "" and entry["decision"] == ""


async def test_entries_name_the_route_template_and_the_rate_limit_decision(
    flushed: RedisServer, redis: Redis
) -> None:
    settings = settings_for(
        flushed.url,
        rate_limit_enabled=True,
        rate_policies={
            "default": RatePolicy(algorithm="fixed_window", limit=100, window_s=60),
            "create": RatePolicy(algorithm="fixed_window", limit=1, window_s=60),
            "positions": RatePolicy(algorithm="fixed_window", limit=100, window_s=60),
        },
        request_log_flush_ms=20,
        rate_role_multipliers={},  # the tests' ADMIN gets the policies as written
    )
    async with api_client(settings) as c:
        ride_id = await request_ride(c, BLR)
        refused = await c.post("/v1/rides", json={})
        assert refused.status_code == 429
        assert (await c.get(f"/v1/rides/{ride_id}")).status_code == 200
        assert (await c.get("/no/such/path")).status_code == 404
    fields = ("method", "route", "status", "policy", "decision")
    entries = [tuple(e[f] for f in fields) for e in await logged(redis)]
    assert entries == [
        ("POST", "/v1/rides", "202", "create", "allow"),
        ("POST", "/v1/rides", "429", "create", "deny"),
        ("GET", "/v1/rides/{ride_id}", "200", "default", "allow"),
        ("GET", "(unmatched)", "404", "default", "allow"),
    ]
    # The tests' client acts as ADMIN: every entry names the user, as the limiter counts them.
    assert {e["client"] for e in await logged(redis)} == {"user:admin-1"}


async def test_the_request_log_can_be_turned_off(flushed: RedisServer, redis: Redis) -> None:
    async with api_client(settings_for(flushed.url, request_log_enabled=False)) as c:
        assert (await c.get("/healthz")).status_code == 200
    assert await redis.exists(keys.request_log()) == 0


async def test_readyz_reports_the_recorder_backlog(flushed: RedisServer, redis: Redis) -> None:
    settings = settings_for(flushed.url, recorder_backlog_warn=5, request_log_enabled=False)
    async with api_client(settings) as c:
        ready = (await c.get("/readyz")).json()
        assert ready == {"status": "ready", "recorder_backlog": 0, "warnings": []}
        for i in range(3):
            await request_ride(c, BLR, rider=f"r{i}")
        ready = (await c.get("/readyz")).json()
        assert ready["recorder_backlog"] == 3 and ready["warnings"] == []
        for i in range(3):
            await request_ride(c, BLR, rider=f"s{i}")
        ready = (await c.get("/readyz")).json()
        assert ready["status"] == "ready" and ready["recorder_backlog"] == 6
        assert "6 entries behind" in ready["warnings"][0]
    # Off: no record, no backlog.
    async with api_client(settings.model_copy(update={"record_enabled": False})) as c:
        assert (await c.get("/readyz")).json()["recorder_backlog"] is None
