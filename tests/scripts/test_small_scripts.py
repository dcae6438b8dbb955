"""Contracts of the prelude's registration and of the driver, deadline, job and rate-limit
scripts that use it."""

from __future__ import annotations

import hashlib

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from rideflow.redis import keys
from rideflow.redis.scripts import Scripts, source
from tests.scripts.conftest import CITY, LAT, LNG, now_ms, put_driver


@pytest.mark.single_redis("SCRIPT EXISTS and SCRIPT FLUSH reach one node of a cluster")
async def test_each_script_runs_after_the_prelude_and_is_cached_by_its_whole_text(
    redis: Redis, scripts: Scripts
) -> None:
    text = source("due_claim")
    assert text.startswith("-- The prelude") and "local function now_ms()" in text
    assert scripts.due_claim.sha == hashlib.sha1(text.encode()).hexdigest()
    await redis.script_flush()
    # Redis lost its cache: EVAL runs it and caches it again under the same SHA1.
    assert await scripts.due_claim(keys=["due"], args=[100, 10]) == []
    assert await redis.script_exists(scripts.due_claim.sha) == [True]


async def test_status_and_positions_follow_the_one_pool_rule(
    redis: Redis, scripts: Scripts
) -> None:
    pool, seen = keys.pool(CITY), keys.seen(CITY)
    await put_driver(redis, "d", status="offline", pooled=False)
    flat = await scripts.driver_status(
        keys=[pool, seen, keys.driver(CITY, "d")], args=["d", "online", 30_000]
    )
    assert dict(zip(flat[::2], flat[1::2], strict=True))["status"] == "online"
    assert await redis.zscore(pool, "d") is not None
    await redis.hset(keys.driver(CITY, "d"), "order", "blr-o")
    codes = await scripts.driver_positions(
        keys=[pool, seen, keys.driver(CITY, "d"), keys.driver(CITY, "nobody")],
        args=[30_000, "d", LNG, LAT, 0, "", "nobody", LNG, LAT, 0, ""],
    )
    assert codes == [1, 0]
    assert await redis.zscore(pool, "d") is None  # holding an order: out of the pool
    old = await scripts.driver_positions(
        keys=[pool, seen, keys.driver(CITY, "d")], args=[30_000, "d", LNG, LAT, 5, ""]
    )
    assert old == [2]
    assert await scripts.driver_status(
        keys=[pool, seen, keys.driver(CITY, "nobody")], args=["nobody", "online", 30_000]
    ) == []  # fmt: skip


async def test_positions_of_drivers_holding_an_order_are_published_on_the_citys_channel(
    redis: Redis, scripts: Scripts
) -> None:
    pool, seen = keys.pool(CITY), keys.seen(CITY)
    await put_driver(redis, "busy", order="blr-o", pooled=False)
    await put_driver(redis, "free")
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.tracking(CITY))
    codes = await scripts.driver_positions(
        keys=[pool, seen, keys.driver(CITY, "free"), keys.driver(CITY, "busy")],
        args=[30_000, "free", LNG, LAT, 0, "", "busy", LNG, LAT, 0, "", keys.tracking(CITY)],
    )
    assert codes == [1, 1]
    driver, order, lat, lng, at = (await published(pubsub)).split("|")
    assert (driver, order, float(lat), float(lng)) == ("busy", "blr-o", LAT, LNG)
    assert int(at) == int(await redis.hget(keys.driver(CITY, "busy"), "seen") or 0)
    # Only the driver holding an order was published; without a channel, nobody is.
    await scripts.driver_positions(
        keys=[pool, seen, keys.driver(CITY, "busy")], args=[30_000, "busy", LNG, LAT, 0, ""]
    )
    await redis.publish(keys.tracking(CITY), "sentinel")  # after anything the script sent
    assert await published(pubsub) == "sentinel"
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_due_claim_leases_what_is_due_and_prune_drops_the_stale(
    redis: Redis, scripts: Scripts
) -> None:
    now = await now_ms(redis)
    await redis.zadd("due", {"past": now - 10, "future": now + 60_000})
    assert await scripts.due_claim(keys=["due"], args=[250, 10]) == ["past"]
    assert now + 250 <= (await redis.zscore("due", "past") or 0) <= await now_ms(redis) + 250
    await put_driver(redis, "fresh")
    await put_driver(redis, "stale")
    await redis.zadd(keys.seen(CITY), {"stale": now - 60_000})
    pruned = await scripts.pool_prune(keys=[keys.pool(CITY), keys.seen(CITY)], args=[30_000, 10])
    assert pruned == 1
    assert await redis.zrange(keys.pool(CITY), 0, -1) == ["fresh"]


async def test_job_submit_cancel_and_redrive_replies(redis: Redis, scripts: Scripts) -> None:
    job_keys = [
        keys.job("j1"), keys.job_queue("default"), keys.jobs_delayed(),
        keys.jobs_index("pending"), keys.job_stats("t"), keys.job_idempotency("k"),
    ]  # fmt: skip
    args = ["j1", "t", "{}", "default", 3, 300, 0, 3_600, "p1", 2]
    assert await scripts.job_submit(keys=job_keys, args=args) == ["CREATED", "j1"]
    assert await scripts.job_submit(keys=job_keys, args=args) == ["EXISTING", "j1"]
    assert await scripts.job_submit(keys=job_keys, args=[*args[:-2], "p2", 2]) == ["CONFLICT", "j1"]
    assert await redis.xlen(keys.job_queue("default")) == 1
    cancel_keys = [
        keys.job("j1"), keys.jobs_delayed(), keys.jobs_index("pending"),
        keys.jobs_index("cancelled"), keys.job_attempts("j1"), *keys.job_queues(),
    ]  # fmt: skip
    assert await scripts.job_cancel(keys=cancel_keys, args=["j1", 60, "g"]) == ["OK"]
    assert await redis.hget(keys.job("j1"), "status") == "cancelled"
    assert await scripts.job_cancel(keys=cancel_keys, args=["j1", 60, "g"]) == [
        "ILLEGAL",
        "cancelled",
    ]
    redrive_keys = [
        keys.job("j1"), keys.job_queue("default"), keys.jobs_dead(), keys.jobs_index("failed"),
        keys.jobs_index("pending"), keys.job_attempts("j1"),
    ]  # fmt: skip
    assert await scripts.job_redrive(keys=redrive_keys, args=["j1", 2]) == ["ILLEGAL", "cancelled"]
    await redis.hset(keys.job("j1"), "status", "failed")
    assert await scripts.job_redrive(keys=redrive_keys, args=["j1", 2]) == ["OK"]
    assert await redis.hget(keys.job("j1"), "status") == "pending"
    await redis.delete(keys.job("j1"))
    assert await scripts.job_cancel(keys=cancel_keys, args=["j1", 60, "g"]) == ["GONE"]
    assert await scripts.job_redrive(keys=redrive_keys, args=["j1", 2]) == ["GONE"]


async def test_rate_limits_admit_the_limit_then_refuse(redis: Redis, scripts: Scripts) -> None:
    fixed = [await scripts.rate_fixed_window(keys=["f"], args=[2, 60_000]) for _ in range(3)]
    assert [r[:2] for r in fixed] == [[1, 1], [1, 0], [0, 0]] and fixed[2][3] > 0
    sliding = [
        await scripts.rate_sliding_window(keys=["s"], args=[2, 60_000, f"m{i}"]) for i in range(3)
    ]
    assert [r[:2] for r in sliding] == [[1, 1], [1, 0], [0, 0]]
    assert 59_000 < sliding[2][3] <= 60_000
    bucket = [await scripts.rate_token_bucket(keys=["b"], args=[1, 60_000, 2]) for _ in range(3)]
    assert [r[:2] for r in bucket] == [[1, 1], [1, 0], [0, 0]]
    assert 59_000 < bucket[2][3] <= 60_000


async def test_request_log_add_appends_one_entry_each_capped(
    redis: Redis, scripts: Scripts
) -> None:
    stream = keys.request_log()
    args: list[str | int] = [1_000, 2, "route", "/healthz", "status", "200", 1, "route", "/v1"]
    assert await scripts.request_log_add(keys=[stream], args=args) == 2
    entries = [f for _, f in await redis.xrange(stream)]
    assert entries == [{"route": "/healthz", "status": "200"}, {"route": "/v1"}]
    assert await scripts.request_log_add(keys=[stream], args=[1_000]) == 0  # an empty buffer


async def published(pubsub: PubSub) -> str:
    """The next message published on the subscribed channel (the confirmation skipped)."""
    for _ in range(100):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if message is not None:
            return str(message["data"])
    raise AssertionError("nothing was published")
