"""The application factory: `create_app(settings)` is the one way to get an app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI
from redis.asyncio import Redis

from rideflow import __version__, errors
from rideflow.api import compat, deliveries, drivers, health, jobs, offers, rides
from rideflow.assign import Assigner
from rideflow.cities import CityMap
from rideflow.config import Settings
from rideflow.connections import create_redis, redis_url
from rideflow.dispatch.service import Dispatcher
from rideflow.drivers import Drivers
from rideflow.jobs import tasks as _builtin_tasks  # noqa: F401  (registers the built-in tasks)
from rideflow.jobs.registry import REGISTRY
from rideflow.jobs.store import Jobs
from rideflow.middleware import BodyLimitMiddleware, RateLimitMiddleware
from rideflow.multiplex import MultiplexedRedis
from rideflow.offers import Offers
from rideflow.orders import Orders
from rideflow.ratelimit import RateLimiter
from rideflow.runtime import freeze_startup_objects
from rideflow.scripts import Scripts

DESCRIPTION = """
Real-time dispatch for ride-hailing and delivery. Ride requests are accepted at once (202) and
queued per city; dispatcher workers find the best available driver, reserve them and offer them
the order; the driver accepts or rejects within a window, and a rejection or a lapse moves on to
the next driver at once. Deliveries can also be assigned synchronously (`POST /v1/delivery/assign`).

Every error is `application/problem+json` (RFC 9457). Requests are rate limited per client
address; limited responses carry `RateLimit-Policy` and `RateLimit` headers.
"""


class AppState(TypedDict):
    """What the lifespan hands every request (`request.state`)."""

    settings: Settings
    redis: Redis
    orders: Orders
    offers: Offers
    assigner: Assigner
    jobs: Jobs
    drivers: Drivers
    limiter: RateLimiter


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; long-lived resources are made in the lifespan, not here."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        redis = create_redis(settings, "api")
        scripts = Scripts.register(redis)
        cities = CityMap(settings.cities)
        # The check runs on every request: it gets a multiplexed connection of its own.
        url = redis_url(settings)
        limits = MultiplexedRedis(url, "api-limits") if MultiplexedRedis.supports(url) else redis
        orders = Orders(redis, scripts, settings, cities)
        REGISTRY.load(settings.job_modules)
        freeze_startup_objects()
        try:
            yield AppState(
                settings=settings,
                redis=redis,
                orders=orders,
                offers=Offers(redis, scripts, settings, cities),
                assigner=Assigner(redis, orders, Dispatcher(redis, scripts, settings)),
                jobs=Jobs(redis, scripts, settings, REGISTRY),
                drivers=Drivers(redis, scripts, settings, cities),
                limiter=RateLimiter(Scripts.register(limits), settings),
            )
        finally:
            if isinstance(limits, MultiplexedRedis):
                await limits.aclose()
            await redis.aclose()

    app = FastAPI(title="RideFlow", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    for module in (rides, deliveries, offers, drivers, jobs, compat, health):
        app.include_router(module.router)
    if settings.rate_limit_enabled:
        app.add_middleware(RateLimitMiddleware, trusted=settings.trusted_networks)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
