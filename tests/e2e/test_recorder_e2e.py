"""The recorder as a real process: killed with -9 mid-batch while events pour in, and cut off
from PostgreSQL while orders flow through the API. Afterwards every event is in SQL exactly once."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from rideflow.orders.schemas import RideCreate
from rideflow.record.db import create_engine
from rideflow.record.models import Order, OrderEvent
from rideflow.redis import keys
from rideflow.schemas import Point
from rideflow.services import build_services
from tests.conftest import BLR, settings_for
from tests.proxy import Proxy
from tests.servers import RedisServer, Service, eventually, post_many

RIDES = 10_000  # created and cancelled: 20,000 events
KILLS = 5


class Counts:
    """Counts rows in the record while a recorder writes to it."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    async def __call__(self, model: Any = OrderEvent) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())

    async def distinct_entries(self) -> int:
        async with self.engine.connect() as conn:
            q = select(func.count()).select_from(
                select(OrderEvent.city, OrderEvent.entry_id).distinct().subquery()
            )
            return int((await conn.execute(q)).scalar_one())


async def pour(settings: Any, redis: Redis, rides: int) -> int:
    """Create and cancel `rides` rides through the services, 100 at a time; events added."""
    services = build_services(settings, redis)
    body = RideCreate(
        rider_id="r", pickup=Point(lat=BLR[0], lng=BLR[1]), dropoff=Point(lat=13.0, lng=77.6)
    )

    async def one() -> None:
        ride_id, _ = await services.orders.create_ride(body)
        await services.orders.step(ride_id, "ride", "cancel")

    for _ in range(rides // 100):
        await asyncio.gather(*(one() for _ in range(100)))
    return rides * 2


async def test_every_event_is_recorded_once_across_five_kill_9s(
    flushed: RedisServer, record_url: str, services: Callable[..., Service], redis: Redis
) -> None:
    settings = settings_for(flushed.url, database_url=record_url, recorder_batch=500)
    count = Counts(record_url)
    producer = asyncio.create_task(pour(settings, redis, RIDES))
    try:
        for kill in range(KILLS):
            recorder = services("recorder", settings, name=f"recorder{kill}")
            before = await count()

            async def advanced(before: int = before, recorder: Service = recorder) -> bool:
                assert recorder.alive(), recorder.output()
                return await count() > before

            await eventually(advanced, 60, f"recorder {kill} to commit a batch")
            recorder.kill9()  # most likely mid-batch: it commits one after the other
        added = await producer
        last = services("recorder", settings, name="recorder-last")

        async def all_recorded() -> bool:
            assert last.alive(), last.output()
            return await count() >= added

        await eventually(all_recorded, 120, "every event to be recorded")

        async def acknowledged() -> bool:
            pending = await redis.xpending(keys.city_events("blr"), keys.RECORDER_GROUP)
            return pending["pending"] == 0

        await eventually(acknowledged, 30, "every entry to be acknowledged")
        assert await count() == added == await count.distinct_entries()
        assert await count(Order) == RIDES
        async with count.engine.connect() as conn:
            statuses = (
                await conn.execute(select(Order.status, func.count()).group_by(Order.status))
            ).all()
        assert [tuple(s) for s in statuses] == [("CANCELLED", RIDES)]
    finally:
        producer.cancel()
        await count.engine.dispose()


FULL_OUTAGE = os.environ.get("RIDEFLOW_FULL_OUTAGE") == "1"


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    ("outage_s", "per_s"),
    [
        pytest.param(5.0, 100, id="5s-at-100-per-s"),
        pytest.param(
            60.0,
            200,
            id="60s-at-200-per-s",
            marks=pytest.mark.skipif(not FULL_OUTAGE, reason="the issue's full outage: set "
                                     "RIDEFLOW_FULL_OUTAGE=1 (about 2 minutes)"),
        ),
    ],
)  # fmt: skip
async def test_orders_flow_while_postgresql_is_unreachable_and_are_recorded_after(
    flushed: RedisServer,
    services: Callable[..., Service],
    redis: Redis,
    tmp_path: Path,
    outage_s: float,
    per_s: int,
) -> None:
    from tests.record import record_database

    async with record_database("postgresql", tmp_path) as url:
        proxy = Proxy.to(url)
        await proxy.start()
        settings = settings_for(flushed.url, database_url=url, request_log_enabled=False)
        api = services("api", settings)
        through = settings.model_copy(update={"database_url": proxy.url_through(url)})
        recorder = services("recorder", through)
        count = Counts(url)
        statuses: list[int] = []
        body = {
            "rider_id": "r",
            "pickup": {"lat": BLR[0], "lng": BLR[1]},
            "dropoff": {"lat": 13.0, "lng": 77.6},
        }
        tick = 0.1
        per_tick = max(1, int(per_s * tick))
        start = time.monotonic()
        total_s = outage_s + 4.0
        try:
            while (elapsed := time.monotonic() - start) < total_s:
                if proxy.server is not None and 2.0 <= elapsed < 2.0 + outage_s:
                    await proxy.stop()
                elif proxy.server is None and elapsed >= 2.0 + outage_s:
                    await proxy.start()
                replies = await post_many(api.port, "/v1/rides", [body] * per_tick, connections=2)
                statuses += [status for status, _ in replies]
                # Pacing, not synchronisation: the next tick's orders at the offered rate.
                await asyncio.sleep(max(0.0, start + (len(statuses) / per_s) - time.monotonic()))
            if proxy.server is None:
                await proxy.start()
            assert set(statuses) == {202}, sorted(set(statuses))
            added = len(statuses)  # one QUEUED event each (no dispatcher runs)

            async def caught_up() -> bool:
                assert recorder.alive(), recorder.output()
                return await count() >= added

            await eventually(caught_up, 120, "the recorder to catch up")
            assert await count() == added == await count(Order)
            assert "SQL unavailable" in recorder.output()
        finally:
            await count.engine.dispose()
            recorder.stop()
            api.stop()
            await proxy.stop()
