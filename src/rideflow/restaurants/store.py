"""Restaurants and menu items in SQL, the system of record: written synchronously (a write is
committed before it is answered), each in one transaction. After each commit the menu's cached
copies are invalidated and limited items' live stock is set (`MenuCache`, `StockRoom`)."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy import delete, select

from rideflow.cities import CityMap, area_text
from rideflow.config import City
from rideflow.errors import Conflict, NotFound, Unprocessable
from rideflow.orders.states import FINAL
from rideflow.record.db import Record
from rideflow.record.models import MenuItem, Restaurant
from rideflow.redis import keys
from rideflow.redis.clock import from_us
from rideflow.restaurants.cache import MenuCache
from rideflow.restaurants.schemas import (
    MenuItemCreate,
    MenuItemPatch,
    MenuItemView,
    MenuView,
    RestaurantCreate,
    RestaurantPage,
    RestaurantPatch,
    RestaurantView,
)
from rideflow.restaurants.stock import StockRoom
from rideflow.schemas import Point


def now_us() -> int:
    return time.time_ns() // 1000


def restaurant_view(r: Restaurant) -> RestaurantView:
    return RestaurantView(
        id=r.id,
        city=r.city,
        name=r.name,
        address=r.address,
        location=Point(lat=r.lat, lng=r.lng),
        open=r.open,
        created_at=from_us(r.created_us),
        updated_at=from_us(r.updated_us),
    )


def item_view(i: MenuItem) -> MenuItemView:
    return MenuItemView(
        id=i.id,
        name=i.name,
        description=i.description,
        price_minor=i.price_minor,
        currency=i.currency,
        available=i.available,
        stock=i.stock,
        per_customer_limit=i.per_customer_limit,
    )


async def load_menu(record: Record, restaurant_id: str) -> bytes:
    """A restaurant's menu as served (JSON), read with one SQL statement (the restaurant outer
    joined with its items); a 404 for an unknown restaurant."""
    q = (
        select(Restaurant, MenuItem)
        .outerjoin(MenuItem, MenuItem.restaurant_id == Restaurant.id)
        .where(Restaurant.id == restaurant_id)
        .order_by(MenuItem.created_us, MenuItem.id)
    )
    async with record.session(read_only=True) as s:
        rows = (await s.execute(q)).all()
    if not rows:
        raise NotFound(f"no restaurant with id {restaurant_id!r}")
    r = rows[0][0]
    menu = MenuView(
        restaurant_id=r.id,
        city=r.city,
        name=r.name,
        location=Point(lat=r.lat, lng=r.lng),
        open=r.open,
        items=[item_view(i) for _, i in rows if i is not None],
    )
    return menu.model_dump_json().encode()


class Restaurants:
    """CRUD of restaurants and their menus; one instance per process."""

    def __init__(
        self, record: Record, redis: Redis, cities: CityMap, cache: MenuCache, stock: StockRoom
    ) -> None:
        self.record, self.redis, self.cities = record, redis, cities
        self.cache, self.stock = cache, stock

    def city_of_location(self, location: Point) -> City:
        city = self.cities.locate(location.lat, location.lng)
        if city is None:
            areas = "; ".join(area_text(c) for c in self.cities)
            raise Unprocessable(
                f"{location.lat}, {location.lng} is outside every service area ({areas}); a "
                "restaurant must lie in a configured city",
                field="location",
            )
        return city

    def city_of_id(self, restaurant_id: str) -> str:
        """The city code a restaurant id carries, or a 404."""
        code = restaurant_id.partition("-")[0]
        if self.cities.get(code) is None:
            raise NotFound(f"no restaurant with id {restaurant_id!r}")
        return code

    async def create(self, body: RestaurantCreate) -> RestaurantView:
        city = self.city_of_location(body.location)
        at = now_us()
        row = Restaurant(
            id=f"{city.code}-{uuid.uuid4().hex[:20]}",
            city=city.code,
            name=body.name,
            address=body.address,
            lat=body.location.lat,
            lng=body.location.lng,
            open=body.open,
            menu_version=1,
            created_us=at,
            updated_us=at,
        )
        async with self.record.session() as s, s.begin():
            s.add(row)
        return restaurant_view(row)

    async def get(self, restaurant_id: str) -> RestaurantView:
        self.city_of_id(restaurant_id)
        async with self.record.session(read_only=True) as s:
            row = await s.get(Restaurant, restaurant_id)
        if row is None:
            raise NotFound(f"no restaurant with id {restaurant_id!r}")
        return restaurant_view(row)

    async def page(self, city: str | None, limit: int, after: str | None) -> RestaurantPage:
        if city is not None and self.cities.get(city) is None:
            raise Unprocessable(
                f"unknown city {city!r}; known: {', '.join(self.cities.codes)}", field="city"
            )
        q = select(Restaurant).order_by(Restaurant.id).limit(limit + 1)
        if city is not None:
            q = q.where(Restaurant.city == city)
        if after is not None:
            q = q.where(Restaurant.id > after)
        async with self.record.session(read_only=True) as s:
            rows = list((await s.scalars(q)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return RestaurantPage(
            restaurants=[restaurant_view(r) for r in rows],
            next_after=rows[-1].id if more and rows else None,
        )

    async def patch(self, restaurant_id: str, body: RestaurantPatch) -> RestaurantView:
        city = self.city_of_id(restaurant_id)
        changes = body.model_dump(exclude_unset=True)
        for name in ("name", "location", "open"):
            if name in changes and changes[name] is None:
                raise Unprocessable(f"{name} cannot be null", field=name)
        if body.location is not None:
            moved = self.city_of_location(body.location)
            if moved.code != city:
                raise Unprocessable(
                    f"a restaurant cannot move to another city ({city} -> {moved.code})",
                    field="location",
                )
        async with self.record.session() as s, s.begin():
            row = await s.get(Restaurant, restaurant_id, with_for_update=self.record.postgres)
            if row is None:
                raise NotFound(f"no restaurant with id {restaurant_id!r}")
            for name, value in changes.items():
                if name == "location":
                    row.lat, row.lng = value["lat"], value["lng"]
                else:
                    setattr(row, name, value)
            row.menu_version += 1
            row.updated_us = now_us()
        await self.cache.invalidate(city, restaurant_id)  # after the commit
        return restaurant_view(row)

    async def delete(self, restaurant_id: str) -> None:
        """Delete a restaurant and its menu; refused (409) while it has food orders not final."""
        city = self.city_of_id(restaurant_id)
        async with self.record.session() as s, s.begin():
            row = await s.get(Restaurant, restaurant_id, with_for_update=self.record.postgres)
            if row is None:
                raise NotFound(f"no restaurant with id {restaurant_id!r}")
            open_ids = await self._open_orders(city, restaurant_id)
            if open_ids:
                shown = ", ".join(open_ids[:5]) + (" …" if len(open_ids) > 5 else "")
                raise Conflict(
                    f"restaurant {restaurant_id} has {len(open_ids)} open food order(s) "
                    f"({shown}); it can be deleted once they are delivered or cancelled",
                    open_orders=open_ids[:50],
                )
            items = list(
                (
                    await s.scalars(
                        select(MenuItem.id).where(MenuItem.restaurant_id == restaurant_id)
                    )
                ).all()
            )
            await s.execute(delete(MenuItem).where(MenuItem.restaurant_id == restaurant_id))
            await s.delete(row)
        await self.stock.forget(city, items)
        await self.cache.invalidate(city, restaurant_id)

    async def _open_orders(self, city: str, restaurant_id: str) -> list[str]:
        """The restaurant's food orders that are not final, by their live status in Redis (the
        index `food_order.lua` keeps; orders found finished, or expired, are pruned from it)."""
        index = keys.restaurant_orders(city, restaurant_id)
        ids = cast(list[str], await self.redis.zrange(index, 0, -1))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in ids:
                pipe.hget(keys.order(city, order_id), "status")
            statuses = cast(list[str | None], await pipe.execute())
        done = [i for i, st in zip(ids, statuses, strict=True) if st is None or st in FINAL]
        if done:
            await self.redis.zrem(index, *done)
        return [
            i for i, st in zip(ids, statuses, strict=True) if st is not None and st not in FINAL
        ]

    # -- menu items

    async def _restaurant_for_write(self, s: Any, restaurant_id: str) -> Restaurant:
        row = await s.get(Restaurant, restaurant_id, with_for_update=self.record.postgres)
        if row is None:
            raise NotFound(f"no restaurant with id {restaurant_id!r}")
        return cast(Restaurant, row)

    async def add_item(self, restaurant_id: str, body: MenuItemCreate) -> MenuItemView:
        city = self.city_of_id(restaurant_id)
        at = now_us()
        item = MenuItem(
            id=f"itm-{uuid.uuid4().hex[:20]}",
            restaurant_id=restaurant_id,
            created_us=at,
            updated_us=at,
            **body.model_dump(),
        )
        async with self.record.session() as s, s.begin():
            row = await self._restaurant_for_write(s, restaurant_id)
            s.add(item)
            row.menu_version += 1
            row.updated_us = at
        await self.stock.configure(city, item.id, item.stock)
        await self.cache.invalidate(city, restaurant_id)
        return item_view(item)

    async def patch_item(
        self, restaurant_id: str, item_id: str, body: MenuItemPatch
    ) -> MenuItemView:
        city = self.city_of_id(restaurant_id)
        changes = body.model_dump(exclude_unset=True)
        at = now_us()
        async with self.record.session() as s, s.begin():
            row = await self._restaurant_for_write(s, restaurant_id)
            item = await s.get(MenuItem, item_id)
            if item is None or item.restaurant_id != restaurant_id:
                raise NotFound(f"no item {item_id!r} on the menu of restaurant {restaurant_id}")
            for name, value in changes.items():
                setattr(item, name, value)
            item.updated_us = at
            row.menu_version += 1
            row.updated_us = at
        if "stock" in changes:
            await self.stock.configure(city, item.id, item.stock)
        await self.cache.invalidate(city, restaurant_id)
        return item_view(item)

    async def delete_item(self, restaurant_id: str, item_id: str) -> None:
        city = self.city_of_id(restaurant_id)
        async with self.record.session() as s, s.begin():
            row = await self._restaurant_for_write(s, restaurant_id)
            item = await s.get(MenuItem, item_id)
            if item is None or item.restaurant_id != restaurant_id:
                raise NotFound(f"no item {item_id!r} on the menu of restaurant {restaurant_id}")
            await s.delete(item)
            row.menu_version += 1
            row.updated_us = now_us()
        await self.stock.forget(city, [item_id])
        await self.cache.invalidate(city, restaurant_id)
