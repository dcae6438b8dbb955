"""Two recorder processes at once, as `rideflow up --recorders 2` runs them: they share the
streams through the recorder group, and every event is recorded once, every order whole, with no
batch failing (two batches holding events of the same new order race to create its row)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from redis.asyncio import Redis
from sqlalchemy import func, select

from rideflow.record.models import Order
from rideflow.redis import keys
from tests.conftest import settings_for
from tests.e2e.test_recorder_e2e import Counts, pour
from tests.servers import RedisServer, Service, eventually

RIDES = 2_000  # created and cancelled: 4,000 events
SUMMARY = re.compile(r"recorder \S+ stopped: batches=(\d+)")


async def test_two_recorders_record_every_event_once(
    flushed: RedisServer, record_url: str, services: Callable[..., Service], redis: Redis
) -> None:
    settings = settings_for(flushed.url, database_url=record_url, recorder_batch=50)
    recorders = [services("recorder", settings, name=f"recorder-{n}") for n in (1, 2)]
    count = Counts(record_url)
    try:
        added = await pour(settings, redis, RIDES)

        async def all_recorded() -> bool:
            assert all(r.alive() for r in recorders), [r.output() for r in recorders]
            return await count() >= added

        await eventually(all_recorded, 120, "every event to be recorded")

        async def acknowledged() -> bool:
            pending = await redis.xpending(keys.city_events("blr"), keys.RECORDER_GROUP)
            return pending["pending"] == 0

        await eventually(acknowledged, 30, "every entry to be acknowledged")
        assert await count() == added == await count.distinct_entries()
        async with count.engine.connect() as conn:
            statuses = (
                await conn.execute(select(Order.status, func.count()).group_by(Order.status))
            ).all()
        assert [tuple(s) for s in statuses] == [("CANCELLED", RIDES)]
        for recorder in recorders:
            assert recorder.stop() == 0
        batches = [int(SUMMARY.findall(r.output())[-1]) for r in recorders]
        assert all(batches), f"a recorder committed nothing: {batches}"
        for recorder in recorders:
            assert "failed" not in recorder.output(), recorder.output()
    finally:
        await count.engine.dispose()
        await asyncio.sleep(0)
