"""The one wiring point: every service built once from settings and a Redis client. The API's
lifespan, the workers, the benchmarks and the tests all get their services here."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from rideflow.cities import CityMap
from rideflow.config import Settings
from rideflow.dispatch.assign import Assigner
from rideflow.dispatch.offers import Offers
from rideflow.dispatch.service import Dispatcher
from rideflow.drivers.store import Drivers
from rideflow.jobs import tasks as _builtin_tasks  # noqa: F401  (registers the built-in tasks)
from rideflow.jobs.registry import REGISTRY, Registry
from rideflow.jobs.store import Jobs
from rideflow.orders.pins import TripPins
from rideflow.orders.store import Orders
from rideflow.record.db import Record
from rideflow.redis.scripts import Scripts
from rideflow.restaurants import tasks as _food_tasks  # noqa: F401  (registers record_food_order)
from rideflow.restaurants.cache import MenuCache
from rideflow.restaurants.orders import FoodOrders
from rideflow.restaurants.stock import StockRoom
from rideflow.restaurants.store import Restaurants, load_menu


@dataclass(frozen=True, slots=True)
class Services:
    """Every service of one process, sharing one Redis client and its scripts."""

    settings: Settings
    redis: Redis
    scripts: Scripts
    cities: CityMap
    orders: Orders
    drivers: Drivers
    offers: Offers
    dispatcher: Dispatcher
    assigner: Assigner
    pins: TripPins
    jobs: Jobs
    registry: Registry
    record: Record
    menus: MenuCache
    stock: StockRoom
    restaurants: Restaurants
    food_orders: FoodOrders


def build_services(
    settings: Settings,
    redis: Redis,
    *,
    scripts: Scripts | None = None,
    registry: Registry = REGISTRY,
) -> Services:
    """Build each service once, on `scripts` (bound to `redis` unless given); loads the
    configured task modules into `registry`."""
    scripts = scripts or Scripts.register(redis)
    cities = CityMap(settings.cities)
    orders = Orders(redis, scripts, settings, cities)
    offers = Offers(redis, scripts, settings, cities)
    dispatcher = Dispatcher(redis, scripts, settings, offers)
    registry.load(settings.job_modules)
    record = Record(settings)
    jobs = Jobs(redis, scripts, settings, registry)

    async def load(city: str, restaurant_id: str) -> bytes:
        return await load_menu(record, restaurant_id)

    menus = MenuCache(redis, scripts, settings, load)
    stock = StockRoom(redis, scripts)
    restaurants = Restaurants(record, redis, cities, menus, stock)
    return Services(
        settings=settings,
        redis=redis,
        scripts=scripts,
        cities=cities,
        orders=orders,
        drivers=Drivers(redis, scripts, settings, cities),
        offers=offers,
        dispatcher=dispatcher,
        assigner=Assigner(redis, orders, dispatcher),
        pins=TripPins(redis, scripts, settings),
        jobs=jobs,
        registry=registry,
        record=record,
        menus=menus,
        stock=stock,
        restaurants=restaurants,
        food_orders=FoodOrders(redis, scripts, settings, restaurants, menus, orders, jobs, record),
    )
