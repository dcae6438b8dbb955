"""The job that writes a food order and its lines into SQL, off the request path. Idempotent:
the rows' primary keys are the order id (and item ids), so a replayed job inserts nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import orjson
from pydantic import Field

from rideflow.jobs.registry import REGISTRY, JobContext
from rideflow.redis import keys
from rideflow.schemas import ID_PATTERN, Body

if TYPE_CHECKING:
    from rideflow.record.db import Record


class RecordFoodOrder(Body):
    order_id: str = Field(min_length=1, max_length=96, pattern=ID_PATTERN)


@REGISTRY.task("record_food_order", RecordFoodOrder)
async def record_food_order(payload: RecordFoodOrder, ctx: JobContext) -> dict[str, Any]:
    """Insert a food order and its lines into the record, as Redis accepted them."""
    order_id = payload.order_id
    city = order_id.partition("-")[0]
    h = cast(dict[str, str], await ctx.redis.hgetall(keys.order(city, order_id)))
    if h.get("food") != "1":
        raise LookupError(f"no food order {order_id} in Redis")
    from rideflow.record.db import Record  # imported here: job workers start without SQL

    record = ctx.record or Record(ctx.settings)
    try:
        return await _insert(record, city, order_id, h)
    finally:
        if ctx.record is None:
            await record.dispose()


async def _insert(record: Record, city: str, order_id: str, h: dict[str, str]) -> dict[str, Any]:
    from sqlalchemy.exc import IntegrityError

    from rideflow.record.models import FoodOrder, FoodOrderLine

    lines = orjson.loads(h["food_lines"])
    lat, _, lng = h["dropoff"].partition(",")
    at = int(h["t_QUEUED"])
    try:
        async with record.session() as s, s.begin():
            if await s.get(FoodOrder, order_id) is not None:
                return {"order_id": order_id, "recorded": False}
            s.add(
                FoodOrder(
                    id=order_id,
                    city=city,
                    restaurant_id=h["restaurant"],
                    customer_id=h["customer"],
                    status=h["status"],
                    total_minor=int(h["food_total"]),
                    currency=h["currency"],
                    dropoff_lat=float(lat),
                    dropoff_lng=float(lng),
                    created_us=at,
                    updated_us=at,
                )
            )
            await s.flush()  # the order before its lines (foreign key)
            s.add_all(
                FoodOrderLine(
                    food_order_id=order_id,
                    item_id=x["item_id"],
                    name=x["name"],
                    qty=x["qty"],
                    unit_price_minor=x["unit_price_minor"],
                )
                for x in lines
            )
    except IntegrityError:  # a replay raced us to it: the rows are there
        return {"order_id": order_id, "recorded": False}
    return {"order_id": order_id, "recorded": True, "lines": len(lines)}
