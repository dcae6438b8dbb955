"""Contracts of order_enqueue.lua, order_begin.lua, order_retry.lua and order_transition.lua."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rideflow.redis import keys
from rideflow.redis.scripts import ORDER_EVENTS_CAP, Scripts
from tests.scripts.conftest import CITY, LAT, LNG, city_events, events, put_driver, put_order

EVENT_CAPS = (ORDER_EVENTS_CAP, 0)
"""As `Settings.event_caps()` passes them while the recorder keeps the city stream."""

ORDER = "blr-o1"
IDEM = keys.idempotency(CITY, "customer:c", "k1")


async def enqueue(
    scripts: Scripts, mode: str = "queue", print_: str = "p1", replaces: str = "",
    order_id: str = ORDER,
) -> Any:  # fmt: skip
    return await scripts.order_enqueue(
        keys=[
            keys.order(CITY, order_id), keys.requests(CITY), keys.order_events(CITY, order_id),
            keys.city_events(CITY), keys.retries(CITY), IDEM,
        ],
        args=[*EVENT_CAPS, order_id, 60_000, mode, 1_000, 3_600, print_, replaces,
              "kind", "ride", "pickup", f"{LAT},{LNG}"],
    )  # fmt: skip


async def test_enqueue_stores_queues_and_answers_by_idempotency_key(
    redis: Redis, scripts: Scripts
) -> None:
    created = await enqueue(scripts)
    assert created == ["CREATED", ORDER]
    order = await redis.hgetall(keys.order(CITY, ORDER))
    at = order["t_QUEUED"]
    assert order == {
        "id": ORDER, "status": "QUEUED", "attempts": "0", "offers": "0",
        "deadline": str(int(at) + 60_000_000), "t_QUEUED": at, "kind": "ride",
        "pickup": f"{LAT},{LNG}",
    }  # fmt: skip
    assert [f for _, f in await redis.xrange(keys.requests(CITY))] == [{"order": ORDER}]
    # The QUEUED event carries the order's fields: the recorder makes its row from the stream.
    queued = {"status": "QUEUED", "at": at, "kind": "ride", "pickup": f"{LAT},{LNG}"}
    assert await events(redis, ORDER) == [queued]
    assert await city_events(redis) == [{"order": ORDER, **queued}]
    assert await redis.get(IDEM) == f"{ORDER}|p1"
    assert 3_590 < await redis.ttl(IDEM) <= 3_600

    assert await enqueue(scripts, order_id="blr-o2") == ["EXISTING", ORDER]
    assert await enqueue(scripts, print_="p2", order_id="blr-o2") == ["CONFLICT", ORDER]
    await redis.delete(IDEM)
    await redis.hset(keys.order(CITY, ORDER), "status", "OFFERED")
    assert await enqueue(scripts) == ["EXISTING", ORDER]  # a replay never resets it
    assert await redis.hget(keys.order(CITY, ORDER), "status") == "OFFERED"
    assert await redis.xlen(keys.requests(CITY)) == 1


async def test_enqueue_direct_leases_the_order_in_the_retry_set(
    redis: Redis, scripts: Scripts
) -> None:
    await redis.set(IDEM, "blr-old|p1")
    # The key names an earlier order that ended without a driver: it moves to this one.
    assert await enqueue(scripts, "direct", replaces="blr-old") == ["CREATED", ORDER]
    order = await redis.hgetall(keys.order(CITY, ORDER))
    assert order["status"] == "SEARCHING" and order["t_SEARCHING"] == order["t_QUEUED"]
    assert await redis.xlen(keys.requests(CITY)) == 0
    due = await redis.zscore(keys.retries(CITY), ORDER)
    assert due == int(order["t_QUEUED"]) // 1000 + 1_000
    assert [e["status"] for e in await events(redis, ORDER)] == ["QUEUED", "SEARCHING"]
    assert await redis.get(IDEM) == f"{ORDER}|p1"


async def begin(scripts: Scripts, entry: str = "") -> Any:
    return await scripts.order_begin(
        keys=[
            keys.order(CITY, ORDER), keys.requests(CITY), keys.retries(CITY), keys.pool(CITY),
            keys.order_events(CITY, ORDER), keys.city_events(CITY), keys.excluded(CITY, ORDER),
        ],
        args=[*EVENT_CAPS, ORDER, entry, keys.DISPATCH_GROUP, 1_000, 2, 600],
    )  # fmt: skip


async def test_begin_searches_once_and_drops_what_is_not_searching(
    redis: Redis, scripts: Scripts
) -> None:
    await put_order(redis, ORDER, "QUEUED", radius_m="800")
    for d in ("a", "b"):
        await put_driver(redis, d)
    await redis.sadd(keys.excluded(CITY, ORDER), "a")
    reply = await begin(scripts)
    # One excluded driver: three asked for; the order's own radius is the first one.
    assert reply[:5] == ["SEARCHING", f"{LAT},{LNG}", "nearest", "800", 3]
    # How long it waited queued: from its QUEUED stamp to the SEARCHING one this call made.
    order = await redis.hgetall(keys.order(CITY, ORDER))
    assert int(reply[5]) == int(order["t_SEARCHING"]) - int(order["t_QUEUED"]) >= 0
    assert sorted(reply[6::2]) == ["a", "b"] and all(float(m) < 1 for m in reply[7::2])
    assert [e["status"] for e in await events(redis, ORDER)] == ["SEARCHING"]
    again = await begin(scripts)
    assert again[0] == "SEARCHING" and again[5] == ""  # searching already: no wait, no event
    assert len(await events(redis, ORDER)) == 1

    await redis.zadd(keys.retries(CITY), {ORDER: 1})
    await redis.hset(keys.order(CITY, ORDER), "status", "CANCELLED")
    assert await begin(scripts) == ["CANCELLED"]
    assert await redis.zscore(keys.retries(CITY), ORDER) is None
    await redis.delete(keys.order(CITY, ORDER))
    assert await begin(scripts) == ["GONE"]


async def test_begin_ends_an_order_queued_past_its_deadline(redis: Redis, scripts: Scripts) -> None:
    await put_order(redis, ORDER, "QUEUED", deadline_s=-1)
    assert await begin(scripts) == ["NO_DRIVER_FOUND"]
    event = (await events(redis, ORDER))[0]
    assert (event["status"], event["reason"]) == (
        "NO_DRIVER_FOUND",
        "the order waited in the queue past its deadline",
    )
    assert 590 < await redis.ttl(keys.order(CITY, ORDER)) <= 600


async def retry(scripts: Scripts, give_up: str = "0") -> Any:
    return await scripts.order_retry(
        keys=[
            keys.order(CITY, ORDER), keys.requests(CITY), keys.retries(CITY),
            keys.order_events(CITY, ORDER), keys.city_events(CITY),
        ],
        args=[*EVENT_CAPS, ORDER, "", keys.DISPATCH_GROUP, 100, 400, 0, 600, give_up, "why"],
    )  # fmt: skip


async def test_retry_backs_off_then_gives_up(redis: Redis, scripts: Scripts) -> None:
    await put_order(redis, ORDER)
    first, second = await retry(scripts), await retry(scripts)
    assert first[0] == second[0] == "SEARCHING"
    assert await redis.hget(keys.order(CITY, ORDER), "attempts") == "2"
    assert await redis.zscore(keys.retries(CITY), ORDER) == second[1]
    assert 100 <= second[1] - first[1] <= 110  # 100 ms, then 200 ms from (about) the same now
    assert await retry(scripts, give_up="1") == ["NO_DRIVER_FOUND"]
    assert (await events(redis, ORDER))[-1]["reason"] == "why"
    assert await redis.zscore(keys.retries(CITY), ORDER) is None
    assert await retry(scripts) == ["NO_DRIVER_FOUND"]  # not searching: nothing changes
    await redis.delete(keys.order(CITY, ORDER))
    assert await retry(scripts) == ["GONE"]


async def step(
    scripts: Scripts, target: str, sources: str, driver: str = "", offer: str = "",
    by: str = "", final: str = "0",
) -> Any:  # fmt: skip
    extra = []
    if driver:
        extra = [keys.driver(CITY, driver), keys.lease(CITY, driver),
                 keys.offer(CITY, offer or "none"), keys.offers_due(CITY)]  # fmt: skip
    return await scripts.order_transition(
        keys=[
            keys.order(CITY, ORDER), keys.pool(CITY), keys.seen(CITY), keys.retries(CITY),
            keys.order_events(CITY, ORDER), keys.city_events(CITY), keys.excluded(CITY, ORDER),
            *extra,
        ],
        args=[*EVENT_CAPS, ORDER, target, sources, driver, offer, by, final, 30_000, 600],
    )  # fmt: skip


async def test_transition_refusals(redis: Redis, scripts: Scripts) -> None:
    assert await step(scripts, "DRIVER_ARRIVING", "ACCEPTED") == ["GONE"]
    await put_order(redis, ORDER, "ACCEPTED", driver="d1", offer="")
    assert await step(scripts, "DRIVER_ARRIVING", "ACCEPTED") == ["CHANGED"]
    assert await step(scripts, "PICKED_UP", "DRIVER_ARRIVING", "d1", by="d1") == [
        "ILLEGAL",
        "ACCEPTED",
    ]
    assert await step(scripts, "DRIVER_ARRIVING", "ACCEPTED", "d1", by="d2") == [
        "NOT_YOURS",
        "d1",
    ]
    assert await events(redis, ORDER) == []
    ok = await step(scripts, "DRIVER_ARRIVING", "ACCEPTED", "d1", by="d1")
    assert ok[0] == "OK" and ok[2] == ""  # no offer withdrawn
    assert await events(redis, ORDER) == [
        {"status": "DRIVER_ARRIVING", "at": ok[1], "driver": "d1", "offer": ""}
    ]


async def test_cancelling_an_offered_order_withdraws_the_offer_and_frees_the_driver(
    redis: Redis, scripts: Scripts
) -> None:
    offer = f"{ORDER}-aa"
    await put_order(redis, ORDER, "OFFERED", driver="d1", offer=offer)
    await put_driver(redis, "d1", order=ORDER, pooled=False)
    await redis.hset(keys.driver(CITY, "d1"), "offer", offer)
    await redis.hset(keys.offer(CITY, offer), mapping={"status": "PENDING", "driver": "d1"})
    await redis.set(keys.lease(CITY, "d1"), f"3|{ORDER}|{offer}")
    await redis.zadd(keys.offers_due(CITY), {offer: 1})
    await redis.zadd(keys.retries(CITY), {ORDER: 1})
    ok = await step(scripts, "CANCELLED", "QUEUED,SEARCHING,OFFERED", "d1", offer, final="1")
    assert ok[0] == "OK" and ok[2] == offer  # the offer withdrawn, named for the metrics
    assert await redis.hmget(keys.offer(CITY, offer), ["status", "answered"]) == [
        "WITHDRAWN",
        ok[1],
    ]
    assert not await redis.exists(keys.lease(CITY, "d1"))
    assert await redis.zcard(keys.offers_due(CITY)) == 0
    assert await redis.zscore(keys.retries(CITY), ORDER) is None
    assert await redis.hmget(keys.driver(CITY, "d1"), ["order", "offer"]) == ["", ""]
    assert await redis.zscore(keys.pool(CITY), "d1") is not None
    assert 590 < await redis.ttl(keys.order(CITY, ORDER)) <= 600
    assert (await events(redis, ORDER))[-1] == {
        "status": "CANCELLED", "at": ok[1], "driver": "d1", "offer": offer,
    }  # fmt: skip


BOARD = keys.leaderboard(CITY, "20260101")


async def test_a_completed_trip_counts_on_todays_leaderboard_and_a_cancel_does_not(
    redis: Redis, scripts: Scripts
) -> None:
    for n, (order_id, target) in enumerate(
        (("blr-x1", "COMPLETED"), ("blr-x2", "DELIVERED"), ("blr-x3", "CANCELLED"))
    ):
        status = "PICKED_UP" if target != "CANCELLED" else "ACCEPTED"
        await put_order(redis, order_id, status, driver="d1", offer="")
        await put_driver(redis, "d1", order=order_id, pooled=False)
        reply = await scripts.order_transition(
            keys=[
                keys.order(CITY, order_id), keys.pool(CITY), keys.seen(CITY), keys.retries(CITY),
                keys.order_events(CITY, order_id), keys.city_events(CITY),
                keys.excluded(CITY, order_id), keys.driver(CITY, "d1"), keys.lease(CITY, "d1"),
                keys.offer(CITY, "none"), keys.offers_due(CITY), BOARD,
            ],
            args=[*EVENT_CAPS, order_id, target, status, "d1", "", "", "1", 30_000, 600,
                  172_800],
        )  # fmt: skip
        assert reply[0] == "OK" and reply[2] == "", (n, reply)  # accepted: nothing withdrawn
    assert await redis.zrange(BOARD, 0, -1, withscores=True) == [("d1", 2.0)]
    assert 172_790 < await redis.ttl(BOARD) <= 172_800
    # Without the key (older callers) the step still works and counts nothing.
    await put_order(redis, ORDER, "PICKED_UP", driver="d2", offer="")
    await put_driver(redis, "d2", order=ORDER, pooled=False)
    ok = await step(scripts, "COMPLETED", "PICKED_UP", "d2", "", final="1")
    assert ok[0] == "OK" and await redis.zscore(BOARD, "d2") is None


async def test_a_withdrawal_never_recreates_a_lost_offer_hash(
    redis: Redis, scripts: Scripts
) -> None:
    offer = f"{ORDER}-aa"
    await put_order(redis, ORDER, "OFFERED", driver="d1", offer=offer)
    await put_driver(redis, "d1", order=ORDER, pooled=False)
    ok = await step(scripts, "CANCELLED", "OFFERED", "d1", offer, final="1")
    assert ok[0] == "OK" and not await redis.exists(keys.offer(CITY, offer))


async def test_an_event_has_the_same_id_in_the_order_stream_and_the_city_stream(
    redis: Redis, scripts: Scripts
) -> None:
    for order_id, mode in (("blr-a", "direct"), ("blr-b", "queue"), ("blr-c", "direct")):
        await enqueue(scripts, mode=mode, order_id=order_id)
        await redis.delete(IDEM)
    city = await redis.xrange(keys.city_events(CITY))
    assert [f["order"] for _, f in city] == ["blr-a", "blr-a", "blr-b", "blr-c", "blr-c"]
    for order_id in ("blr-a", "blr-b", "blr-c"):
        own = [i for i, _ in await redis.xrange(keys.order_events(CITY, order_id))]
        assert own == [i for i, f in city if f["order"] == order_id]
    # An order stream already past the city's next id (the city stream deleted, the clock
    # stepped back) gets an id of its own instead of failing the step.
    await redis.delete(keys.city_events(CITY))
    await redis.xadd(keys.order_events(CITY, "blr-d"), {"status": "X"}, id="99999999999999-0")
    await enqueue(scripts, order_id="blr-d")
    ids = [i for i, _ in await redis.xrange(keys.order_events(CITY, "blr-d"))]
    assert len(ids) == 2 and ids[1] > ids[0]
