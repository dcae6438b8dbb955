"""Dependency aliases, defined once; route functions read like the API they serve.

The providers are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool,
which costs more than the request itself on the hot path."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from rideflow.dispatch.assign import Assigner
from rideflow.dispatch.offers import Offers
from rideflow.drivers.store import Drivers
from rideflow.errors import Unprocessable
from rideflow.jobs.store import Jobs
from rideflow.orders.pins import TripPins
from rideflow.orders.store import Orders
from rideflow.record.db import Record
from rideflow.restaurants.cache import MenuCache
from rideflow.restaurants.orders import FoodOrders
from rideflow.restaurants.store import Restaurants


async def _orders(request: Request) -> Orders:
    return orders_of(request)


async def _offers(request: Request) -> Offers:
    offers: Offers = request.state.offers
    return offers


async def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.state.jobs
    return jobs


async def _assigner(request: Request) -> Assigner:
    assigner: Assigner = request.state.assigner
    return assigner


async def _drivers(request: Request) -> Drivers:
    drivers: Drivers = request.state.drivers
    return drivers


async def _pins(request: Request) -> TripPins:
    pins: TripPins = request.state.pins
    return pins


async def _redis(request: Request) -> Redis:
    redis: Redis = request.state.redis
    return redis


async def _record(request: Request) -> Record:
    record: Record = request.state.record
    return record


async def _menus(request: Request) -> MenuCache:
    menus: MenuCache = request.state.menus
    return menus


async def _restaurants(request: Request) -> Restaurants:
    restaurants: Restaurants = request.state.restaurants
    return restaurants


async def _food_orders(request: Request) -> FoodOrders:
    food_orders: FoodOrders = request.state.food_orders
    return food_orders


MenusDep = Annotated[MenuCache, Depends(_menus)]
RestaurantsDep = Annotated[Restaurants, Depends(_restaurants)]
FoodOrdersDep = Annotated[FoodOrders, Depends(_food_orders)]
OrdersDep = Annotated[Orders, Depends(_orders)]
PinsDep = Annotated[TripPins, Depends(_pins)]
RecordDep = Annotated[Record, Depends(_record)]
OffersDep = Annotated[Offers, Depends(_offers)]
AssignerDep = Annotated[Assigner, Depends(_assigner)]
JobsDep = Annotated[Jobs, Depends(_jobs)]
DriversDep = Annotated[Drivers, Depends(_drivers)]
RedisDep = Annotated[Redis, Depends(_redis)]


IDEMPOTENCY_DOC = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Repeat a creation safely: the same key returns the first result",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }
    ]
}


def idempotency_key(request: Request) -> str | None:
    """The `Idempotency-Key` header, read by hand (as a declared header parameter FastAPI spends
    more on it than on the rest of the request); routes document it with
    `openapi_extra=IDEMPOTENCY_DOC`."""
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise Unprocessable("must be 1 to 255 characters", field="Idempotency-Key")
    return key


def orders_of(request: Request) -> Orders:
    """The order store, without a dependency pass."""
    orders: Orders = request.state.orders
    return orders
