"""The recorder on real streams made by RideFlow's own code paths, into SQLite and PostgreSQL:
the rows each transition leaves, replays that change nothing, acknowledgement after commit,
streams kept until recorded, finished jobs, driver samples."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, insert, select

from rideflow.config import Settings
from rideflow.record.db import create_engine
from rideflow.record.models import (
    DriverTrack,
    FoodOrder,
    JobRecord,
    Offer,
    Order,
    OrderEvent,
    RequestLog,
)
from rideflow.redis import keys
from rideflow.redis.streams import Entry, ensure_group, parse_read, trim_acknowledged
from rideflow.workers.recorder import Recorder
from tests.conftest import BLR, Workers, api_client, offset, settings_for
from tests.fleet import (
    add_driver,
    answer,
    finish,
    pending_offer,
    request_ride,
    submit,
    take,
    wait_final,
    wait_for_status,
)
from tests.proxy import Proxy
from tests.servers import RedisServer, eventually


def record_settings(flushed: RedisServer, url: str, **overrides: Any) -> Settings:
    return settings_for(flushed.url, database_url=url, **overrides)


async def record_all(settings: Settings) -> Counter[str]:
    """Run a recorder in burst mode: it ends once every entry is recorded and acknowledged."""
    return await Recorder(settings, burst=True).run(asyncio.Event())


async def rows(url: str, model: Any, *order_by: Any) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(select(model.__table__).order_by(*order_by))
            return [dict(r._mapping) for r in result]
    finally:
        await engine.dispose()


async def count(url: str, model: Any) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())
    finally:
        await engine.dispose()


async def all_entries(redis: Redis, stream: str) -> list[Entry]:
    return [Entry(stream, i, f) for i, f in await redis.xrange(stream)]


async def every_transition(settings: Settings, workers: Workers) -> dict[str, Any]:
    """A completed ride (one offer rejected first), a ride cancelled while offered, and a
    delivery assigned in the request; their ids and the two settled offers."""
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "near", offset(*BLR, north_m=300))
        await add_driver(c, "far", offset(*BLR, north_m=2500))
        done = await request_ride(c, BLR, rider="rider-1")
        await wait_for_status(c, done, {"OFFERED"})
        first = await pending_offer(c, "near")
        assert first is not None
        assert (await answer(c, first, "reject")).status_code == 200
        await take(c, done)
        await finish(c, done)
        cancelled = await request_ride(c, BLR, rider="rider-2")
        await wait_for_status(c, cancelled, {"OFFERED"})
        withdrawn = await pending_offer(c, "near")
        assert withdrawn is not None
        assert (await c.post(f"/v1/rides/{cancelled}/cancel")).status_code == 200
        r = await c.post(
            "/v1/delivery/assign",
            json={
                "order_id": "ORD-1",
                "restaurant_id": "RST-1",
                "location": {"lat": BLR[0], "lng": BLR[1]},
                "timeout_sec": 30,
            },
        )
        assert r.status_code == 200, r.text
    return {
        "done": done,
        "cancelled": cancelled,
        "delivery": r.json()["delivery_id"],
        "rejected_offer": first["offer_id"],
        "withdrawn_offer": withdrawn["offer_id"],
    }


async def test_rides_and_deliveries_are_projected_from_their_events(
    flushed: RedisServer, record_url: str, workers: Workers, redis: Redis
) -> None:
    settings = record_settings(flushed, record_url)
    flow = await every_transition(settings, workers)
    done, cancelled, delivery = flow["done"], flow["cancelled"], flow["delivery"]
    engine = create_engine(record_url)
    async with engine.begin() as conn:
        await conn.execute(
            insert(FoodOrder),
            [
                {
                    "id": delivery, "city": "blr", "restaurant_id": "RST-1",
                    "customer_id": "cust-1", "status": "PLACED", "total_minor": 100,
                    "currency": "INR", "dropoff_lat": 1.0, "dropoff_lng": 2.0, "created_us": 1,
                    "updated_us": 1,
                }
            ],
        )  # fmt: skip
    await engine.dispose()
    added = await redis.xlen(keys.city_events("blr"))

    counts = await record_all(settings)

    assert counts["events"] == added and counts["replayed"] == 0
    assert await count(record_url, OrderEvent) == added
    orders = {o["id"]: o for o in await rows(record_url, Order, Order.id)}
    assert set(orders) == {done, cancelled, delivery}
    ride = orders[done]
    assert ride["kind"] == "ride" and ride["customer_id"] == "rider-1"
    assert (ride["status"], ride["outcome"], ride["driver_id"]) == ("COMPLETED",) * 2 + ("far",)
    assert ride["offers"] == 2 and ride["strategy"] == "nearest"
    assert (ride["pickup_lat"], ride["pickup_lng"]) == BLR
    assert ride["dropoff_lat"] == BLR[0] + 0.02 and 2000 < ride["pickup_m"] < 3000
    # offered_us is the first offer's time; searching_us the last search's (after the reject).
    times = [ride[c] for c in ("queued_us", "offered_us", "searching_us", "accepted_us")]
    times += [ride[c] for c in ("arriving_us", "picked_up_us", "finished_us")]
    assert all(times) and times == sorted(times)
    assert ride["cancelled_us"] is None and ride["no_driver_us"] is None
    assert ride["created_us"] == ride["queued_us"] and ride["updated_us"] == ride["finished_us"]
    second = orders[cancelled]
    assert second["status"] == second["outcome"] == "CANCELLED" and second["offers"] == 1
    assert second["cancelled_us"] and second["finished_us"] is None
    assert orders[delivery]["kind"] == "delivery" and orders[delivery]["ext_order"] == "ORD-1"
    assert orders[delivery]["restaurant_id"] == "RST-1"
    assert orders[delivery]["status"] == "OFFERED"
    food = await rows(record_url, FoodOrder)
    assert [f["status"] for f in food] == ["OFFERED"]

    offers = {o["id"]: o for o in await rows(record_url, Offer, Offer.offered_us)}
    assert offers[flow["rejected_offer"]]["outcome"] == "rejected"
    assert offers[flow["rejected_offer"]]["driver_id"] == "near"
    accepted = [o for o in offers.values() if o["order_id"] == done and o["driver_id"] == "far"]
    assert [o["outcome"] for o in accepted] == ["accepted"] and accepted[0]["answered_us"]
    assert offers[flow["withdrawn_offer"]]["outcome"] == "withdrawn"
    statuses = [e["status"] for e in await rows(record_url, OrderEvent, OrderEvent.id)]
    assert statuses.count("OFFERED") == 4 and statuses.count("QUEUED") == 3


async def test_a_replayed_batch_inserts_and_counts_nothing_twice(
    flushed: RedisServer, record_url: str, redis: Redis
) -> None:
    settings = record_settings(flushed, record_url)
    async with api_client(settings) as c:
        await add_driver(c, "d1", offset(*BLR, north_m=200))
        ids = [await request_ride(c, BLR, rider=f"r{i}") for i in range(5)]
        for ride_id in ids[:3]:
            assert (await c.post(f"/v1/rides/{ride_id}/cancel")).status_code == 200
    entries = await all_entries(redis, keys.city_events("blr"))
    await record_all(settings)
    before = (await rows(record_url, Order, Order.id), await rows(record_url, OrderEvent))

    recorder = Recorder(settings)
    replay = await recorder.commit(entries)  # every entry again, in one batch
    again = await recorder.commit(entries[2:5])  # and a part of it
    await recorder.record.dispose()
    await recorder.redis.aclose()

    assert replay["events"] == again["events"] == 0
    assert replay["replayed"] == len(entries) and again["replayed"] == 3
    after = (await rows(record_url, Order, Order.id), await rows(record_url, OrderEvent))
    assert after == before
    assert [o["status"] for o in after[0]].count("CANCELLED") == 3


async def test_entries_are_acknowledged_only_after_their_commit(
    flushed: RedisServer, record_url: str, redis: Redis
) -> None:
    """While the batch cannot commit (SQLite: its table is missing; PostgreSQL: the database is
    unreachable behind a proxy we stop) the recorder retries it and nothing is acknowledged;
    once it commits, it is recorded once and acknowledged."""
    postgres = record_url.startswith("postgresql")
    proxy = Proxy.to(record_url) if postgres else None
    url = proxy.url_through(record_url) if proxy else record_url
    settings = record_settings(flushed, url, database_auto_migrate=False)
    async with api_client(settings.model_copy(update={"database_url": record_url})) as c:
        for i in range(3):
            await request_ride(c, BLR, rider=f"r{i}")
    stream = keys.city_events("blr")
    engine = create_engine(record_url)
    if not postgres:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE orders RENAME TO orders_away")
    await ensure_group(redis, stream, keys.RECORDER_GROUP)
    batch = parse_read(await redis.xreadgroup(keys.RECORDER_GROUP, "c1", {stream: ">"}, count=100))
    assert len(batch) == 3
    recorder = Recorder(settings)
    handled = asyncio.create_task(recorder.handle(batch))

    async def retried() -> bool:
        return recorder.counts["sql_retries"] >= 2

    await eventually(retried, 10, "the recorder to retry the batch")
    assert (await redis.xpending(stream, keys.RECORDER_GROUP))["pending"] == 3
    assert await count(record_url, OrderEvent) == 0
    if proxy:
        await proxy.start()
    else:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE orders_away RENAME TO orders")
    await engine.dispose()
    await asyncio.wait_for(handled, 30)
    await recorder.handle(batch)  # handled twice (a redelivery): recorded once
    await recorder.record.dispose()
    await recorder.redis.aclose()
    if proxy:
        await proxy.stop()
    assert (await redis.xpending(stream, keys.RECORDER_GROUP))["pending"] == 0
    assert await count(record_url, OrderEvent) == 3 and await count(record_url, Order) == 3


async def test_the_city_stream_is_kept_past_its_cap_until_recorded(
    flushed: RedisServer, tmp_path: Any, redis: Redis
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    settings = record_settings(flushed, url, event_stream_cap=50)
    stream = keys.city_events("blr")
    await ensure_group(redis, stream, keys.RECORDER_GROUP)  # a recorder ran once, then stopped
    async with api_client(settings) as c:
        for i in range(300):
            await request_ride(c, BLR, rider=f"r{i}")
    assert await redis.xlen(stream) == 300  # never capped: nothing was recorded
    assert await trim_acknowledged(redis, stream, keys.RECORDER_GROUP, approximate=False) == 0
    assert await redis.xlen(stream) == 300

    counts = await record_all(settings)
    assert counts["events"] == 300
    await trim_acknowledged(redis, stream, keys.RECORDER_GROUP, approximate=False)
    assert await redis.xlen(stream) <= 1  # recorded, then trimmed (to the last delivered)

    # Without the record the cap applies again.
    capped = settings.model_copy(update={"record_enabled": False})
    async with api_client(capped) as c:
        for i in range(300):
            await request_ride(c, BLR, rider=f"s{i}")
    assert 50 <= await redis.xlen(stream) < 300


async def test_finished_jobs_and_requests_are_recorded(
    flushed: RedisServer, record_url: str, workers: Workers
) -> None:
    settings = record_settings(flushed, record_url)
    workers.jobs(settings)
    async with api_client(settings) as c:
        job_id = await submit(c, "test_work", payload={"value": 3})
        assert (await wait_final(c, job_id))["status"] == "completed"
        assert (await c.get("/v1/rides/blr-nope")).status_code == 404
    counts = await record_all(settings)
    assert counts["jobs"] == 1
    jobs = await rows(record_url, JobRecord)
    assert [(j["id"], j["task"], j["status"]) for j in jobs] == [(job_id, "test_work", "completed")]
    assert jobs[0]["attempts"] == 1 and jobs[0]["result"]
    assert jobs[0]["created_us"] <= jobs[0]["started_us"] <= jobs[0]["finished_us"]
    logged = await rows(record_url, RequestLog, RequestLog.id)
    assert ("GET", "/v1/rides/{ride_id}", 404) in [
        (r["method"], r["route"], r["status"]) for r in logged
    ]
    assert ("POST", "/v1/jobs", 202) in [(r["method"], r["route"], r["status"]) for r in logged]


async def test_driver_samples_upsert_drivers_and_add_one_track_row_each(
    flushed: RedisServer, record_url: str
) -> None:
    settings = record_settings(flushed, record_url)
    async with api_client(settings) as c:
        await add_driver(c, "d1", offset(*BLR, north_m=100))
        await add_driver(c, "d2", offset(*BLR, north_m=900), online=False)
    recorder = Recorder(settings)
    try:
        assert await recorder.sample("blr") == 2
        assert await recorder.sample("blr") == 0  # nobody seen since
        recorder.sampled.clear()
        assert await recorder.sample("blr") == 2  # the same sample again: no new track rows
    finally:
        await recorder.record.dispose()
        await recorder.redis.aclose()
    from rideflow.record.models import Driver

    drivers = {d["id"]: d for d in await rows(record_url, Driver)}
    assert drivers["d1"]["status"] == "online" and drivers["d2"]["status"] == "offline"
    assert drivers["d1"]["name"] == "Driver d1" and drivers["d1"]["rating"] == 4.5
    assert abs(drivers["d1"]["lat"] - offset(*BLR, north_m=100)[0]) < 1e-9
    assert await count(record_url, DriverTrack) == 2


async def snapshot(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return await rows(url, Order, Order.id), await rows(url, Offer, Offer.id)


async def test_events_recorded_out_of_order_leave_the_same_rows(
    flushed: RedisServer, record_url: str, workers: Workers, redis: Redis
) -> None:
    """A killed recorder's entries are reclaimed after newer ones were recorded: the later
    half of the stream first, then the earlier half, ends where the stream's order does."""
    settings = record_settings(flushed, record_url)
    await every_transition(settings, workers)
    entries = await all_entries(redis, keys.city_events("blr"))
    half = len(entries) // 2
    recorder = Recorder(settings)
    try:
        await recorder.commit(entries[half:])
        await recorder.commit(entries[:half])
        reordered = await snapshot(record_url)
        engine = create_engine(record_url)
        async with engine.begin() as conn:
            for table in ("order_events", "offers", "orders"):
                await conn.exec_driver_sql(f"DELETE FROM {table}")
        await engine.dispose()
        await recorder.commit(entries)
        in_order = await snapshot(record_url)
        for a, b in zip(reordered[0] + reordered[1], in_order[0] + in_order[1], strict=True):
            assert {k: v for k, v in a.items() if b[k] != v} == {}, b["id"]
        assert reordered == in_order
    finally:
        await recorder.record.dispose()
        await recorder.redis.aclose()


async def test_order_ids_any_text_are_found_again_by_a_later_batch(
    flushed: RedisServer, record_url: str
) -> None:
    """A batch finds the orders earlier batches recorded by their ids, which it writes into the
    statement: ids with quotes, backslashes and percent signs are found, not broken or injected."""
    settings = record_settings(flushed, record_url)
    odd = ["blr-o'1", "blr-o\\2", "blr-o%3", "blr-o'); DELETE FROM orders; --"]
    queued = [
        Entry(keys.city_events("blr"), f"1-{i}", {"order": o, "status": "QUEUED", "at": "10"})
        for i, o in enumerate(odd)
    ]
    searching = [
        Entry(keys.city_events("blr"), f"2-{i}", {"order": o, "status": "SEARCHING", "at": "20"})
        for i, o in enumerate(odd)
    ]
    recorder = Recorder(settings)
    try:
        await recorder.commit(queued)
        await recorder.commit(searching)
    finally:
        await recorder.record.dispose()
        await recorder.redis.aclose()
    recorded = await rows(record_url, Order, Order.id)
    assert sorted(odd) == [r["id"] for r in recorded]
    assert {r["status"] for r in recorded} == {"SEARCHING"}
    assert {r["searching_us"] for r in recorded} == {20}
