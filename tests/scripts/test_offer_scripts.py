"""Contracts of offer_create.lua, offer_accept.lua and offer_release.lua: KEYS, ARGV, the exact
reply of each branch and the state it leaves."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rideflow.redis import keys
from rideflow.redis.scripts import ORDER_EVENTS_CAP, Scripts
from tests.scripts.conftest import CITY, city_events, events, now_ms, put_driver, put_order

EVENT_CAPS = (ORDER_EVENTS_CAP, 0)
"""As `Settings.event_caps()` passes them while the recorder keeps the city stream."""

ORDER = "blr-o1"
OFFER = f"{ORDER}-aa"
STALE_MS, GRACE_MS, RETENTION_S, MAX_LAPSES = 30_000, 5_000, 600, 3


async def create(
    scripts: Scripts,
    drivers: list[str],
    entry: str = "",
    offer_id: str = OFFER,
    caps: tuple[int, int] = EVENT_CAPS,
) -> Any:
    per_driver: list[str] = []
    pairs: list[str | float] = []
    for d in drivers:
        per_driver += [keys.driver(CITY, d), keys.lease(CITY, d)]
        pairs += [d, 120.5]
    return await scripts.offer_create(
        keys=[
            keys.order(CITY, ORDER), keys.pool(CITY), keys.seen(CITY), keys.requests(CITY),
            keys.retries(CITY), keys.order_events(CITY, ORDER), keys.city_events(CITY),
            keys.offers_due(CITY), keys.fence(CITY), keys.excluded(CITY, ORDER),
            keys.offer(CITY, offer_id), *per_driver,
        ],
        args=[*caps, ORDER, entry, keys.DISPATCH_GROUP, STALE_MS, offer_id, GRACE_MS,
              RETENTION_S, *pairs],
    )  # fmt: skip


async def accept(scripts: Scripts, driver: str, token: str) -> Any:
    return await scripts.offer_accept(
        keys=[
            keys.offer(CITY, OFFER), keys.order(CITY, ORDER), keys.driver(CITY, driver),
            keys.lease(CITY, driver), keys.offers_due(CITY), keys.order_events(CITY, ORDER),
            keys.city_events(CITY),
        ],
        args=[*EVENT_CAPS, OFFER, driver, token],
    )  # fmt: skip


async def release(
    scripts: Scripts, action: str, driver: str, token: str = "", reason: str = ""
) -> Any:
    return await scripts.offer_release(
        keys=[
            keys.offer(CITY, OFFER), keys.order(CITY, ORDER), keys.driver(CITY, driver),
            keys.lease(CITY, driver), keys.offers_due(CITY), keys.pool(CITY), keys.seen(CITY),
            keys.excluded(CITY, ORDER), keys.requests(CITY), keys.order_events(CITY, ORDER),
            keys.city_events(CITY),
        ],
        args=[*EVENT_CAPS, action, OFFER, driver, token, STALE_MS, MAX_LAPSES, RETENTION_S,
              reason],
    )  # fmt: skip


async def offered(redis: Redis, scripts: Scripts, window_ms: int = 15_000) -> list[Any]:
    """An order offered to driver d1 (d0 excluded, d2 further away)."""
    await put_order(redis, ORDER, window_ms=window_ms)
    for d in ("d0", "d1", "d2"):
        await put_driver(redis, d)
    await redis.sadd(keys.excluded(CITY, ORDER), "d0")
    reply: list[Any] = await create(scripts, ["d0", "d1", "d2"])
    return reply


async def test_create_offers_the_first_eligible_candidate_and_books_everything(
    redis: Redis, scripts: Scripts
) -> None:
    await redis.xgroup_create(keys.requests(CITY), keys.DISPATCH_GROUP, id="0", mkstream=True)
    entry = await redis.xadd(keys.requests(CITY), {"order": ORDER})
    await redis.xreadgroup(keys.DISPATCH_GROUP, "c", {keys.requests(CITY): ">"})
    await redis.zadd(keys.retries(CITY), {ORDER: 1})
    await put_order(redis, ORDER, t_SEARCHING="1700000000000000")
    await put_driver(redis, "stale")
    await redis.zadd(keys.seen(CITY), {"stale": 1})  # its last position is long past
    await put_driver(redis, "d1")
    before = await now_ms(redis)
    reply = await create(scripts, ["stale", "d1"], entry=entry)

    assert reply[0] == "OFFERED" and reply[1] == 2  # the second candidate, 1-based
    _, _, at, token, deadline, name, rating, vehicle, searching_since = reply
    assert searching_since == "1700000000000000"  # the order's latest SEARCHING stamp
    assert token == 1 and (name, rating, vehicle) == ("Driver d1", "4.5", "KA01")
    assert before + 15_000 <= deadline <= await now_ms(redis) + 15_000
    assert await redis.hgetall(keys.offer(CITY, OFFER)) == {
        "id": OFFER, "order": ORDER, "driver": "d1", "token": "1", "deadline": str(deadline),
        "status": "PENDING", "created": at, "pickup_m": "120.5",
    }  # fmt: skip
    # Kept for the retention after its lease would end: it outlives its own deadline.
    ttl = await redis.ttl(keys.offer(CITY, OFFER))
    assert RETENTION_S + 20 - 2 <= ttl <= RETENTION_S + 20
    assert await redis.get(keys.lease(CITY, "d1")) == f"1|{ORDER}|{OFFER}"
    assert 15_000 < await redis.pttl(keys.lease(CITY, "d1")) <= 20_000
    assert await redis.zscore(keys.offers_due(CITY), OFFER) == deadline
    order = await redis.hgetall(keys.order(CITY, ORDER))
    assert (order["status"], order["driver"], order["offer"]) == ("OFFERED", "d1", OFFER)
    assert (order["offers"], order["pickup_m"], order["t_OFFERED"]) == ("1", "120.5", at)
    driver = await redis.hmget(keys.driver(CITY, "d1"), ["order", "offer"])
    assert driver == [ORDER, OFFER]
    assert await redis.zscore(keys.pool(CITY), "d1") is None
    assert await redis.zscore(keys.pool(CITY), "stale") is None  # pruned on the way
    event = {"status": "OFFERED", "at": at, "driver": "d1", "offer": OFFER, "pickup_m": "120.5"}
    assert await events(redis, ORDER) == [event]
    assert await city_events(redis) == [{"order": ORDER, **event}]
    pending = await redis.xpending(keys.requests(CITY), keys.DISPATCH_GROUP)
    assert pending["pending"] == 0  # acknowledged in the same step
    assert await redis.zscore(keys.retries(CITY), ORDER) is None


async def test_create_refusals_book_nothing(redis: Redis, scripts: Scripts) -> None:
    await put_order(redis, ORDER)
    await put_driver(redis, "busy", order="blr-other", pooled=True)
    await put_driver(redis, "leased")
    await redis.set(keys.lease(CITY, "leased"), "9|blr-x|blr-x-1")
    await put_driver(redis, "off", status="offline")
    assert await create(scripts, ["busy", "leased", "off"]) == ["NONE"]
    assert await redis.hget(keys.order(CITY, ORDER), "status") == "SEARCHING"
    assert not await redis.exists(keys.offer(CITY, OFFER))
    assert await redis.zscore(keys.pool(CITY), "off") is None

    await put_order(redis, ORDER, deadline_s=-1)
    assert await create(scripts, ["busy"]) == ["LATE"]

    await redis.zadd(keys.retries(CITY), {ORDER: 1})
    await redis.hset(keys.order(CITY, ORDER), "status", "CANCELLED")
    assert await create(scripts, ["busy"]) == ["NOT_SEARCHING", "CANCELLED"]
    assert await redis.zscore(keys.retries(CITY), ORDER) is None
    await redis.delete(keys.order(CITY, ORDER))
    assert await create(scripts, ["busy"]) == ["NOT_SEARCHING", "GONE"]
    assert await events(redis, ORDER) == []


async def test_accept_keeps_the_driver_and_releases_the_lease(
    redis: Redis, scripts: Scripts
) -> None:
    reply = await offered(redis, scripts)
    token = str(reply[3])
    assert await accept(scripts, "d2", token) == ["NOT_YOURS", "d1"]
    assert await accept(scripts, "d1", "999") == ["STALE_TOKEN", token]
    first = await accept(scripts, "d1", token)
    assert first[0] == "ACCEPTED" and first[2] == ""
    assert first[3] == reply[2]  # when the offer was made (offer_create's `at`)
    assert await accept(scripts, "d1", token) == ["ACCEPTED", first[1], "replay"]
    assert await redis.hmget(keys.offer(CITY, OFFER), ["status", "answered"]) == [
        "ACCEPTED",
        first[1],
    ]
    order = await redis.hmget(keys.order(CITY, ORDER), ["status", "driver", "t_ACCEPTED"])
    assert order == ["ACCEPTED", "d1", first[1]]
    assert await redis.hmget(keys.driver(CITY, "d1"), ["order", "offer", "lapses"]) == [
        ORDER, "", "0",
    ]  # fmt: skip
    assert not await redis.exists(keys.lease(CITY, "d1"))
    assert await redis.zcard(keys.offers_due(CITY)) == 0
    assert (await events(redis, ORDER))[-1] == {
        "status": "ACCEPTED", "at": first[1], "driver": "d1", "offer": OFFER,
    }  # fmt: skip
    assert await release(scripts, "reject", "d1", token) == ["ANSWERED", "ACCEPTED"]


async def test_accept_refuses_when_late_gone_or_moved_on(redis: Redis, scripts: Scripts) -> None:
    reply = await offered(redis, scripts, window_ms=-1)  # its deadline is already past
    token = str(reply[3])
    assert await accept(scripts, "d1", token) == ["LATE", str(reply[4])]
    assert await redis.hget(keys.offer(CITY, OFFER), "status") == "PENDING"  # nothing changed

    await redis.hset(keys.offer(CITY, OFFER), "deadline", await now_ms(redis) + 60_000)
    await redis.hset(keys.order(CITY, ORDER), "status", "CANCELLED")
    assert await accept(scripts, "d1", token) == ["ANSWERED", "CANCELLED"]
    await redis.hset(keys.offer(CITY, OFFER), "status", "WITHDRAWN")
    assert await accept(scripts, "d1", token) == ["ANSWERED", "WITHDRAWN"]
    await redis.delete(keys.offer(CITY, OFFER))
    assert await accept(scripts, "d1", token) == ["GONE"]


async def test_reject_frees_the_driver_excludes_them_and_requeues_the_order(
    redis: Redis, scripts: Scripts
) -> None:
    reply = await offered(redis, scripts)
    token = str(reply[3])
    assert await release(scripts, "reject", "d2", token) == ["NOT_YOURS", "d1"]
    assert await release(scripts, "reject", "d1", "7") == ["STALE_TOKEN", token]
    await redis.hset(keys.driver(CITY, "d1"), "lapses", 2)
    rejected = await release(scripts, "reject", "d1", token, reason="driver d1 went offline")
    assert rejected[0] == "REJECTED" and rejected[2] == ""
    assert await release(scripts, "reject", "d1", token) == ["REJECTED", rejected[1], "replay"]
    assert await redis.hget(keys.offer(CITY, OFFER), "status") == "REJECTED"
    order = await redis.hgetall(keys.order(CITY, ORDER))
    assert (order["status"], order["driver"], order["offer"]) == ("SEARCHING", "", "")
    assert "pickup_m" not in order
    assert await redis.hmget(keys.driver(CITY, "d1"), ["order", "offer", "lapses"]) == [
        "", "", "0",
    ]  # fmt: skip
    assert await redis.zscore(keys.pool(CITY), "d1") is not None
    assert not await redis.exists(keys.lease(CITY, "d1"))
    assert await redis.zcard(keys.offers_due(CITY)) == 0
    assert await redis.smembers(keys.excluded(CITY, ORDER)) == {"d0", "d1"}
    assert 0 < await redis.ttl(keys.excluded(CITY, ORDER)) <= RETENTION_S
    assert (await events(redis, ORDER))[-1] == {
        "status": "SEARCHING", "at": rejected[1], "driver": "d1", "offer": OFFER,
        "outcome": "REJECTED", "reason": "driver d1 went offline",
    }  # fmt: skip
    assert [f for _, f in await redis.xrange(keys.requests(CITY))] == [{"order": ORDER}]


async def test_expire_waits_for_the_deadline_then_lapses_and_counts(
    redis: Redis, scripts: Scripts
) -> None:
    await offered(redis, scripts)
    deadline = await redis.hget(keys.offer(CITY, OFFER), "deadline")
    assert await release(scripts, "expire", "d1") == ["NOT_DUE", deadline]
    assert await release(scripts, "expire", "d2") == ["NOT_YOURS", "d1"]
    await redis.hset(keys.offer(CITY, OFFER), "deadline", await now_ms(redis) - 1)
    await redis.hset(keys.driver(CITY, "d1"), "lapses", 1)
    lapsed = await release(scripts, "expire", "d1")
    assert lapsed[0] == "EXPIRED" and lapsed[2] == ""
    assert await redis.hget(keys.driver(CITY, "d1"), "lapses") == "2"
    assert await redis.zscore(keys.pool(CITY), "d1") is not None
    event = (await events(redis, ORDER))[-1]
    assert (event["outcome"], event["reason"]) == (
        "EXPIRED",
        "the offer to driver d1 lapsed unanswered",
    )
    # Swept again (another sweeper's claim): settled already, and no longer due.
    await redis.zadd(keys.offers_due(CITY), {OFFER: 1})
    assert await release(scripts, "expire", "d1") == ["ANSWERED", "EXPIRED"]
    assert await redis.zcard(keys.offers_due(CITY)) == 0


async def test_the_last_lapse_allowed_takes_the_driver_offline(
    redis: Redis, scripts: Scripts
) -> None:
    await offered(redis, scripts, window_ms=-1)
    await redis.hset(keys.driver(CITY, "d1"), "lapses", MAX_LAPSES - 1)
    assert (await release(scripts, "expire", "d1"))[::2] == ["EXPIRED", "offline"]
    assert await redis.hmget(keys.driver(CITY, "d1"), ["status", "lapses", "order"]) == [
        "offline", "0", "",
    ]  # fmt: skip
    assert await redis.zscore(keys.pool(CITY), "d1") is None


async def test_a_lost_offer_is_repaired_and_anything_else_gone_is_dropped(
    redis: Redis, scripts: Scripts
) -> None:
    await offered(redis, scripts)
    await redis.delete(keys.offer(CITY, OFFER))
    assert await release(scripts, "reject", "d1", "1") == ["GONE"]  # only the sweep repairs
    assert await release(scripts, "expire", "d2") == ["GONE"]  # not the order's driver
    repaired = await release(scripts, "expire", "d1")
    assert repaired[0] == "REPAIRED" and repaired[2] == ""
    order = await redis.hmget(keys.order(CITY, ORDER), ["status", "driver", "offer"])
    assert order == ["SEARCHING", "", ""]
    assert await redis.hmget(keys.driver(CITY, "d1"), ["order", "offer", "lapses"]) == [
        "", "", "0",
    ]  # fmt: skip
    assert await redis.zscore(keys.pool(CITY), "d1") is not None
    assert not await redis.exists(keys.lease(CITY, "d1"))
    assert await redis.zcard(keys.offers_due(CITY)) == 0
    assert await redis.smembers(keys.excluded(CITY, ORDER)) == {"d0"}  # not the driver's doing
    assert (await events(redis, ORDER))[-1] == {
        "status": "SEARCHING", "at": repaired[1], "driver": "d1", "offer": OFFER,
        "outcome": "LOST", "reason": "the offer to driver d1 was lost before it was answered",
    }  # fmt: skip
    assert [f for _, f in await redis.xrange(keys.requests(CITY))] == [{"order": ORDER}]
    # Once repaired the order no longer waits on it: a late sweep only drops it.
    await redis.zadd(keys.offers_due(CITY), {OFFER: 1})
    assert await release(scripts, "expire", "d1") == ["GONE"]
    assert await redis.zcard(keys.offers_due(CITY)) == 0


async def test_event_streams_are_capped_by_the_caps_passed(redis: Redis, scripts: Scripts) -> None:
    assert EVENT_CAPS == (ORDER_EVENTS_CAP, 0) == (128, 0)
    for n in range(300):
        await redis.xadd(keys.order_events(CITY, ORDER), {"n": n})
        await redis.xadd(keys.city_events(CITY), {"n": n})
    await offered(redis, scripts)
    # MAXLEN ~ trims whole macro nodes: near the cap, never below it.
    assert 128 <= await redis.xlen(keys.order_events(CITY, ORDER)) < 300
    # A city cap of 0 trims nothing: the recorder's runner trims what it recorded.
    assert await redis.xlen(keys.city_events(CITY)) == 301


async def test_a_city_cap_trims_the_city_stream_when_the_record_is_off(
    redis: Redis, scripts: Scripts
) -> None:
    from rideflow.config import Settings

    caps = Settings(record_enabled=False, event_stream_cap=100).event_caps()
    assert caps == (ORDER_EVENTS_CAP, 100)
    assert Settings(record_enabled=True).event_caps() == (ORDER_EVENTS_CAP, 0)
    for n in range(300):
        await redis.xadd(keys.city_events(CITY), {"n": n})
    await put_order(redis, ORDER)
    await put_driver(redis, "d1")
    assert (await create(scripts, ["d1"], caps=caps))[0] == "OFFERED"
    assert 100 <= await redis.xlen(keys.city_events(CITY)) < 300
