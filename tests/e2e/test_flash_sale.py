"""The flash sale of seeds/001 across two real API processes: 1,000 units, 10,000 concurrent
attempts by 5,000 customers (two each, one allowed per customer). Exactly 1,000 are sold, no
customer gets two, and after a job worker drains the queue SQL holds exactly the accepted
orders with their lines (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from rideflow.record.db import Record
from rideflow.record.models import FoodOrder, FoodOrderLine
from rideflow.redis import keys
from tests.auth import admin
from tests.conftest import BLR, offset, settings_for
from tests.servers import RedisServer, Service, eventually, post_many

UNITS = 1_000
CUSTOMERS = 5_000


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_flash_sale_sells_exactly_the_stock(
    flushed: RedisServer, record_url: str, services: Callable[..., Service], redis: Redis
) -> None:
    settings = settings_for(flushed.url, database_url=record_url)
    apis = [services("api", settings), services("api", settings)]
    first = apis[0].url  # type: ignore[attr-defined]
    lat, lng = offset(*BLR, north_m=400)
    async with httpx.AsyncClient(base_url=first, headers=admin(settings)) as c:
        r = await c.post(
            "/v1/restaurants", json={"name": "Flash", "location": {"lat": lat, "lng": lng}}
        )
        rid = r.json()["id"]
        body = {
            "name": "Limited Biryani",
            "price_minor": 19900,
            "currency": "INR",
            "stock": UNITS,
            "per_customer_limit": 1,
        }
        item = (await c.post(f"/v1/restaurants/{rid}/menu", json=body)).json()

    drop = offset(*BLR, north_m=-1500)
    attempts: list[dict[str, Any]] = [
        {
            "restaurant_id": rid,
            "customer_id": f"cust-{n % CUSTOMERS}",
            "items": [{"item_id": item["id"], "qty": 1}],
            "dropoff": {"lat": drop[0], "lng": drop[1]},
        }
        for n in range(2 * CUSTOMERS)
    ]
    random.Random(9).shuffle(attempts)
    halves = [attempts[0::2], attempts[1::2]]
    sent = await asyncio.gather(
        *(
            post_many(
                api.port,  # type: ignore[attr-defined]
                "/v1/food-orders",
                half,
                keys=[f"attempt-{i}-{n}" for n in range(len(half))],
                connections=32,
            )
            for i, (api, half) in enumerate(zip(apis, halves, strict=True))
        )
    )
    answers = [a for part in sent for a in part]
    bodies = [b for half in halves for b in half]
    assert len(answers) == 2 * CUSTOMERS
    statuses = Counter(status for status, _ in answers)
    assert statuses == {202: UNITS, 409: 2 * CUSTOMERS - UNITS}, statuses
    accepted: dict[str, str] = {}
    per_customer: Counter[str] = Counter()
    for (status, raw), request in zip(answers, bodies, strict=True):
        reply = orjson.loads(raw)
        if status == 202:
            accepted[reply["order_id"]] = request["customer_id"]
            per_customer[request["customer_id"]] += 1
            assert reply["total_minor"] == 19900
        else:
            assert "sold out" in reply["detail"] or "at most 1" in reply["detail"], reply
    assert len(accepted) == UNITS and max(per_customer.values()) == 1
    assert int(await redis.get(keys.stock("blr", item["id"])) or -1) == 0
    buyers = await redis.hgetall(keys.stock_buyers("blr", item["id"]))
    assert len(buyers) == UNITS and set(buyers.values()) == {"1"}

    # Queue -> worker -> database: exactly the accepted orders, each with its line.
    services("jobs", settings)
    record = Record(settings)
    try:

        async def recorded() -> bool:
            async with record.session() as s:
                n = await s.scalar(select(func.count()).select_from(FoodOrder))
            return n == UNITS

        await eventually(recorded, 120, "every accepted order in SQL", interval=0.5)
        async with record.session() as s:
            rows = (await s.execute(select(FoodOrder.id, FoodOrder.customer_id))).all()
            lines = (await s.execute(select(FoodOrderLine.food_order_id, FoodOrderLine.qty))).all()
    finally:
        await record.dispose()
    assert dict(rows) == accepted  # type: ignore[arg-type]
    assert sorted(line[0] for line in lines) == sorted(accepted)
    assert {line[1] for line in lines} == {1}
