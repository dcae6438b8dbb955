"""Food orders: priced from the menu, limited stock reserved and the delivery queued in one Lua
step (`food_order.lua`), then recorded in SQL by a background job (`record_food_order`):
User -> Redis (Lua) -> Queue -> Worker -> Database."""

from __future__ import annotations

import uuid
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from sqlalchemy import select

from rideflow.config import Settings
from rideflow.errors import Conflict, NotFound, Unprocessable
from rideflow.idempotency import IDEMPOTENCY_TTL_S, fingerprint
from rideflow.jobs.schemas import JobSubmit
from rideflow.jobs.store import Jobs
from rideflow.orders.store import Orders, named, point
from rideflow.record.db import Record
from rideflow.record.models import FoodOrder, FoodOrderLine
from rideflow.redis import keys
from rideflow.redis.clock import from_us
from rideflow.redis.scripts import Scripts
from rideflow.restaurants.cache import MenuCache
from rideflow.restaurants.schemas import (
    FoodOrderAccepted,
    FoodOrderCreate,
    FoodOrderView,
    Line,
)
from rideflow.restaurants.store import Restaurants
from rideflow.schemas import Point

RECORD_TASK = "record_food_order"


class FoodOrders:
    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        settings: Settings,
        restaurants: Restaurants,
        cache: MenuCache,
        orders: Orders,
        jobs: Jobs,
        record: Record,
    ) -> None:
        self.redis, self.scripts, self.settings = redis, scripts, settings
        self.restaurants, self.cache, self.orders, self.jobs = restaurants, cache, orders, jobs
        self.record = record

    async def _menu(self, restaurant_id: str) -> tuple[str, dict[str, Any]]:
        try:
            city = self.restaurants.city_of_id(restaurant_id)
            menu = await self.cache.menu(city, restaurant_id)
        except NotFound as exc:
            raise Unprocessable(exc.detail, field="restaurant_id") from exc
        return city, cast(dict[str, Any], orjson.loads(menu.body))

    def _price(self, menu: dict[str, Any], body: FoodOrderCreate) -> tuple[list[Line], str]:
        items = {i["id"]: i for i in menu["items"]}
        seen: set[str] = set()
        lines: list[Line] = []
        for n, wanted in enumerate(body.items):
            field = f"items.{n}.item_id"
            if wanted.item_id in seen:
                raise Unprocessable(
                    f"item {wanted.item_id} is listed twice; give it once with its qty", field=field
                )
            seen.add(wanted.item_id)
            item = items.get(wanted.item_id)
            if item is None:
                raise Unprocessable(
                    f"item {wanted.item_id} is not on the menu of restaurant {body.restaurant_id}",
                    field=field,
                )
            if not item["available"]:
                raise Unprocessable(
                    f"item {wanted.item_id} ({item['name']}) is not available now", field=field
                )
            lines.append(
                Line(
                    item_id=item["id"],
                    name=item["name"],
                    qty=wanted.qty,
                    unit_price_minor=item["price_minor"],
                    line_total_minor=item["price_minor"] * wanted.qty,
                )
            )
        currencies = {items[line.item_id]["currency"] for line in lines}
        if len(currencies) > 1:
            raise Unprocessable(
                f"the items are priced in several currencies ({', '.join(sorted(currencies))}); "
                "order them separately",
                field="items",
            )
        return lines, currencies.pop()

    async def create(
        self, body: FoodOrderCreate, idempotency_key: str | None = None
    ) -> FoodOrderAccepted:
        customer = named(body.customer_id, "customer_id")
        city_code, menu = await self._menu(body.restaurant_id)
        if not menu["open"]:
            raise Conflict(f"restaurant {body.restaurant_id} is closed; it takes no orders now")
        lines, currency = self._price(menu, body)
        total = sum(line.line_total_minor for line in lines)
        city = self.orders.city_of_pickup(Point.model_validate(menu["location"]), "restaurant_id")
        pickup, drop = menu["location"], body.dropoff
        order_id = f"{city_code}-{uuid.uuid4().hex}"
        fields: dict[str, str | int | float] = {
            "kind": "delivery",
            "window_ms": self.settings.offer_window_ms("delivery"),
            "customer": customer,
            "pickup": f"{pickup['lat']},{pickup['lng']}",
            "dropoff": f"{drop.lat},{drop.lng}",
            "strategy": city.strategy,
            "restaurant": body.restaurant_id,
            "food": 1,
            "food_lines": orjson.dumps([line.model_dump() for line in lines]).decode(),
            "food_total": total,
            "currency": currency,
        }
        limited = {i["id"]: i for i in menu["items"] if i["stock"] is not None}
        mine = [line for line in lines if line.item_id in limited]
        script_keys = [
            keys.order(city_code, order_id),
            keys.requests(city_code),
            keys.order_events(city_code, order_id),
            keys.city_events(city_code),
            keys.retries(city_code),
            keys.idempotency(city_code, f"customer:{customer}", idempotency_key or "-"),
            keys.reservation(city_code, order_id),
            keys.restaurant_orders(city_code, body.restaurant_id),
        ]
        args: list[str | int | float] = [
            *self.settings.event_caps(),
            order_id,
            self.settings.deadline_ms("delivery"),
            IDEMPOTENCY_TTL_S,
            fingerprint(body.model_dump(mode="json")) if idempotency_key is not None else "",
            customer,
            self.settings.food_reservation_ttl_s,
            len(mine),
        ]
        for line in mine:
            item = limited[line.item_id]
            script_keys += [keys.stock(city_code, line.item_id)]
            script_keys += [keys.stock_buyers(city_code, line.item_id)]
            args += [line.item_id, line.qty, item["per_customer_limit"] or 0, item["stock"]]
        for name, value in fields.items():
            args.extend((name, value))
        reply = await self.scripts.food_order(keys=script_keys, args=args)
        outcome = str(reply[0])
        if outcome == "SOLD_OUT":
            raise Conflict(f"item {reply[1]} is sold out ({reply[2]} left)", item_id=str(reply[1]))
        if outcome == "LIMIT":
            item = limited[str(reply[1])]
            raise Conflict(
                f"customer {body.customer_id} may buy at most {item['per_customer_limit']} of "
                f"item {reply[1]} ({item['name']}) and already holds {reply[2]}",
                item_id=str(reply[1]),
            )
        if outcome == "CONFLICT":
            raise Conflict(
                f"Idempotency-Key {idempotency_key!r} was already used for a different request "
                f"(food order {reply[1]})"
            )
        stored_id = str(reply[1])
        # Recorded in SQL by a job; a replayed request submits it again (the job's own
        # idempotency key makes that one job), which covers a process dying in between.
        await self.jobs.submit(
            JobSubmit(task=RECORD_TASK, payload={"order_id": stored_id}),
            idempotency_key=f"food-order:{stored_id}",
        )
        if outcome == "EXISTING" and stored_id != order_id:
            view = await self.get(stored_id)
            return FoodOrderAccepted(
                order_id=stored_id,
                city=view.city,
                restaurant_id=view.restaurant_id,
                lines=view.lines,
                total_minor=view.total_minor,
                currency=view.currency,
            )
        return FoodOrderAccepted(
            order_id=order_id,
            city=city_code,
            restaurant_id=body.restaurant_id,
            lines=lines,
            total_minor=total,
            currency=currency,
        )

    async def get(self, order_id: str) -> FoodOrderView:
        """A food order: from Redis while it holds the order (the delivery's live status),
        from SQL once Redis' copy has expired."""
        city = order_id.partition("-")[0]
        if self.restaurants.cities.get(city) is None:
            raise NotFound(f"no food order with id {order_id!r}")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.order(city, order_id))
            pipe.hget(keys.reservation(city, order_id), "state")
            h, state = cast(tuple[dict[str, str], str | None], tuple(await pipe.execute()))
        if h:
            if h.get("food") != "1":
                raise NotFound(f"no food order with id {order_id!r}")
            return FoodOrderView(
                order_id=order_id,
                city=city,
                restaurant_id=h["restaurant"],
                customer_id=h["customer"],
                status=h["status"],
                driver_id=h.get("driver") or None,
                lines=[Line.model_validate(x) for x in orjson.loads(h["food_lines"])],
                total_minor=int(h["food_total"]),
                currency=h["currency"],
                dropoff=point(h["dropoff"]),
                created_at=from_us(h["t_QUEUED"]),
                stock_released=state == "released",
            )
        return await self._recorded(order_id)

    async def _recorded(self, order_id: str) -> FoodOrderView:
        async with self.record.session(read_only=True) as s:
            row = await s.get(FoodOrder, order_id)
            if row is None:
                raise NotFound(f"no food order with id {order_id!r}")
            found = await s.scalars(
                select(FoodOrderLine)
                .where(FoodOrderLine.food_order_id == order_id)
                .order_by(FoodOrderLine.item_id)
            )
            lines = list(found.all())
        return FoodOrderView(
            order_id=row.id,
            city=row.city,
            restaurant_id=row.restaurant_id,
            customer_id=row.customer_id,
            status=row.status,
            lines=[
                Line(
                    item_id=x.item_id,
                    name=x.name,
                    qty=x.qty,
                    unit_price_minor=x.unit_price_minor,
                    line_total_minor=x.qty * x.unit_price_minor,
                )
                for x in lines
            ],
            total_minor=row.total_minor,
            currency=row.currency,
            dropoff=Point(lat=row.dropoff_lat, lng=row.dropoff_lng),
            created_at=from_us(row.created_us),
            stock_released=row.status in ("CANCELLED", "NO_DRIVER_FOUND"),
        )
