"""The stream runner against a real Redis, in-process: group life cycle, reclaiming, renewal,
dead letters, trimming, burst mode, stopping, and re-reading after Redis trouble."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from rideflow.config import Settings
from rideflow.redis.connections import open_redis
from rideflow.redis.streams import Entry, trim_acknowledged
from rideflow.workers.runner import Handler, Poison, Runner
from tests.servers import RedisServer, eventually

STREAM, GROUP = "t:stream", "t:group"


class Recorder(Handler):
    """Acknowledges what it handles and remembers it; `fail` decides per entry what to raise."""

    def __init__(self, redis: Redis, claim_idle_ms: int = 30_000, **kw: object) -> None:
        super().__init__(
            name="test", group=GROUP, streams=[STREAM], claim_idle_ms=claim_idle_ms, **kw
        )  # type: ignore[arg-type]
        self.redis = redis
        self.seen: list[Entry] = []
        self.fail: dict[str, BaseException] = {}
        self.release = asyncio.Event()
        self.release.set()

    async def handle(self, batch: list[Entry]) -> None:
        for entry in batch:
            self.seen.append(entry)
            exc = self.fail.pop(entry.fields.get("n", ""), None)
            if exc is not None:
                raise exc
            await self.release.wait()
            await self.redis.xack(entry.stream, GROUP, entry.id)


@pytest.fixture
async def runner_redis(flushed: RedisServer) -> AsyncIterator[Redis]:
    """A client of the runner's own (the runner closes it when it stops)."""
    client = await open_redis(Settings(redis_url=flushed.url), "runner-test")
    yield client
    await client.aclose()


async def run_burst(runner: Runner, within: float = 10) -> dict[str, int]:
    async with asyncio.timeout(within):
        return dict(await runner.run(asyncio.Event()))


async def test_an_existing_group_is_used_and_burst_exits_once_idle(
    redis: Redis, runner_redis: Redis
) -> None:
    await redis.xadd(STREAM, {"n": "before"})  # before the group: read from id 0 all the same
    await redis.xgroup_create(STREAM, GROUP, id="0")  # BUSYGROUP when the runner creates it
    await redis.xadd(STREAM, {"n": "after"})
    handler = Recorder(runner_redis)
    counts = await run_burst(Runner(runner_redis, handler, burst=True))
    assert [e.fields["n"] for e in handler.seen] == ["before", "after"]
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    assert counts.get("errors", 0) == 0 and counts.get("redis_errors", 0) == 0


async def test_the_group_is_recreated_after_a_flush(redis: Redis, runner_redis: Redis) -> None:
    handler = Recorder(runner_redis)
    stop = asyncio.Event()
    run = asyncio.create_task(Runner(runner_redis, handler).run(stop))
    try:
        await redis.xadd(STREAM, {"n": "1"})
        await eventually(_true(lambda: len(handler.seen) == 1), 5, "the first entry")
        await redis.flushall()  # NOGROUP on the next read
        await redis.xadd(STREAM, {"n": "2"})
        await eventually(_true(lambda: len(handler.seen) == 2), 10, "the entry after the flush")
        assert handler.seen[1].fields == {"n": "2"}
    finally:
        stop.set()
        await run


async def test_entries_of_a_dead_consumer_are_reclaimed(redis: Redis, runner_redis: Redis) -> None:
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    entry_id = await redis.xadd(STREAM, {"n": "held"})
    await redis.xreadgroup(GROUP, "dead", {STREAM: ">"})
    handler = Recorder(runner_redis, claim_idle_ms=100)
    counts = await run_burst(Runner(runner_redis, handler, burst=True))
    assert [(e.id, e.reclaimed) for e in handler.seen] == [(entry_id, True)]
    assert counts["reclaimed"] == 1
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_claims_of_slow_work_are_renewed(redis: Redis, runner_redis: Redis) -> None:
    handler = Recorder(runner_redis, claim_idle_ms=150)
    handler.release.clear()
    stop = asyncio.Event()
    run = asyncio.create_task(Runner(runner_redis, handler, consumer="slow").run(stop))
    try:
        await redis.xadd(STREAM, {"n": "1"})
        await eventually(_true(lambda: len(handler.seen) == 1), 5, "the entry to be taken")
        # Ten claim timeouts later, the entry is still ours and was never handed out again.
        for _ in range(10):
            await asyncio.sleep(0.15)
            pending = await redis.xpending_range(STREAM, GROUP, "-", "+", 10)
            assert [(p["consumer"], p["times_delivered"]) for p in pending] == [("slow", 1)]
        handler.release.set()
        await eventually(_no_pending(redis), 5, "the entry to be acknowledged")
        assert len(handler.seen) == 1
    finally:
        stop.set()
        await run


async def test_an_entry_failing_every_time_is_dead_lettered_after_n_deliveries(
    redis: Redis, runner_redis: Redis
) -> None:
    handler = Recorder(runner_redis, claim_idle_ms=50, max_deliveries=3)
    handler.fail = _always("bad", ValueError("cannot"))
    await redis.xadd(STREAM, {"n": "bad"})
    await redis.xadd(STREAM, {"n": "poison"})
    handler.fail["poison"] = Poison("names nothing")
    await redis.xadd(STREAM, {"n": "good"})
    counts = await run_burst(Runner(runner_redis, handler, burst=True))
    dead = await redis.xrange(f"{STREAM}:dead")
    assert [(f["n"], f["error"]) for _, f in dead] == [
        ("poison", "names nothing"),
        ("bad", "ValueError: cannot"),
    ]
    tries = [e.fields["n"] for e in handler.seen]
    assert tries.count("bad") == 3 and tries.count("poison") == 1 and tries.count("good") == 1
    assert counts["dead_lettered"] == 2
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_an_entry_delivered_too_often_without_an_answer_is_buried(
    redis: Redis, runner_redis: Redis
) -> None:
    """An entry that kills whoever takes it never fails in a handler: it just goes idle."""
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    entry_id = await redis.xadd(STREAM, {"n": "killer"})
    await redis.xreadgroup(GROUP, "a", {STREAM: ">"})
    for consumer in ("b", "c"):  # each one a delivery more
        await redis.xclaim(STREAM, GROUP, consumer, 0, [entry_id])
    handler = Recorder(runner_redis, claim_idle_ms=50, max_deliveries=3)
    await run_burst(Runner(runner_redis, handler, burst=True))
    assert handler.seen == []
    dead = await redis.xrange(f"{STREAM}:dead")
    assert [(f["n"], f["entry"], f["error"]) for _, f in dead] == [
        ("killer", entry_id, "delivered 3 times, never settled")
    ]


async def test_own_entries_are_read_again_at_once_after_redis_trouble(
    redis: Redis, runner_redis: Redis
) -> None:
    handler = Recorder(runner_redis)  # the claim timeout (30 s) is not what brings it back
    handler.fail["1"] = RedisConnectionError("gone")
    await redis.xadd(STREAM, {"n": "1"})
    counts = await run_burst(Runner(runner_redis, handler, burst=True), within=5)
    assert [(e.fields["n"], e.reclaimed) for e in handler.seen] == [("1", False), ("1", True)]
    assert counts["reread"] == 1 and counts["redis_errors"] == 1
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_stopping_finishes_work_in_hand_and_says_what_was_done(
    redis: Redis, runner_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Recorder(runner_redis, grace_s=5)
    handler.release.clear()
    stop = asyncio.Event()
    run = asyncio.create_task(Runner(runner_redis, handler, consumer="leaving").run(stop))
    await redis.xadd(STREAM, {"n": "1"})
    await eventually(_true(lambda: len(handler.seen) == 1), 5, "the entry to be taken")
    with caplog.at_level(logging.INFO, "rideflow.runner"):
        stop.set()
        await asyncio.sleep(0)
        assert not run.done()
        handler.release.set()  # within the grace period
        await run
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    assert "test leaving stopped: " in caplog.text


async def test_work_past_the_grace_period_is_left_for_others(
    redis: Redis, runner_redis: Redis
) -> None:
    handler = Recorder(runner_redis, grace_s=0.2)
    handler.release.clear()  # never released
    stop = asyncio.Event()
    run = asyncio.create_task(Runner(runner_redis, handler, consumer="leaving").run(stop))
    await redis.xadd(STREAM, {"n": "1"})
    await eventually(_true(lambda: len(handler.seen) == 1), 5, "the entry to be taken")
    stop.set()
    async with asyncio.timeout(5):
        await run
    pending = await redis.xpending_range(STREAM, GROUP, "-", "+", 10)
    assert [p["consumer"] for p in pending] == ["leaving"]


async def test_trimming_never_drops_an_unacknowledged_entry(redis: Redis) -> None:
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    ids = [await redis.xadd(STREAM, {"n": str(i)}) for i in range(10)]
    await redis.xreadgroup(GROUP, "c", {STREAM: ">"}, count=6)
    await redis.xack(STREAM, GROUP, ids[0], ids[1], ids[3])
    exact = {"approximate": False}
    assert await trim_acknowledged(redis, STREAM, GROUP, **exact) == 2  # ids[2] is pending
    assert [e[0] for e in await redis.xrange(STREAM)] == ids[2:]
    # Another group that has read less holds the stream back too.
    await redis.xgroup_create(STREAM, "other", id=ids[3])
    await redis.xack(STREAM, GROUP, ids[2], ids[4], ids[5])
    assert await trim_acknowledged(redis, STREAM, GROUP, **exact) == 1
    assert [e[0] for e in await redis.xrange(STREAM)] == ids[3:]


async def test_approximate_trimming_stops_short_of_the_oldest_pending(redis: Redis) -> None:
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    ids = [await redis.xadd(STREAM, {"n": str(i)}) for i in range(1000)]
    await redis.xreadgroup(GROUP, "c", {STREAM: ">"}, count=1000)
    await redis.xack(STREAM, GROUP, *ids[:700], *ids[701:])
    trimmed = await trim_acknowledged(redis, STREAM, GROUP)
    assert 0 < trimmed <= 700  # whole nodes of 100 entries, none at or past ids[700]
    assert (await redis.xrange(STREAM, ids[700], ids[700]))[0][0] == ids[700]


def _always(key: str, exc: BaseException) -> dict[str, BaseException]:
    class Again(dict[str, BaseException]):
        def pop(self, k: str, default: object = None) -> BaseException:  # type: ignore[override]
            return exc if k == key else super().pop(k, default)  # type: ignore[arg-type]

    return Again()


def _true(check: object) -> object:
    async def condition() -> bool:
        return bool(check())  # type: ignore[operator]

    return condition


def _no_pending(redis: Redis) -> object:
    async def condition() -> bool:
        return int((await redis.xpending(STREAM, GROUP))["pending"]) == 0

    return condition
