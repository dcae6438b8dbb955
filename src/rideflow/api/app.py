"""The application factory: `create_app(settings)` is the one way to get an app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from rideflow import __version__
from rideflow.api import (
    admin,
    auth,
    dashboard,
    deliveries,
    docs,
    drivers,
    food_orders,
    health,
    history,
    jobs,
    legacy,
    metrics,
    offers,
    problems,
    restaurants,
    rides,
    ws,
)
from rideflow.api.middleware import BodyLimitMiddleware, JsonBodyMiddleware, RateLimitMiddleware
from rideflow.api.ratelimit import RateLimiter
from rideflow.api.requestlog import RequestLog, RequestLogMiddleware
from rideflow.auth.apikeys import ApiKeys
from rideflow.auth.identity import Identity, build_identity
from rideflow.auth.secret import jwt_secret
from rideflow.auth.tokens import AccessTokens
from rideflow.config import Settings
from rideflow.dispatch.assign import Assigner
from rideflow.dispatch.offers import Offers
from rideflow.drivers.store import Drivers
from rideflow.jobs.store import Jobs
from rideflow.metrics import families as metrics_families
from rideflow.orders.pins import TripPins
from rideflow.orders.store import Orders
from rideflow.process import freeze_startup_objects
from rideflow.realtime.gateway import Gateway, set_driver_status
from rideflow.realtime.hub import Hub
from rideflow.record.db import Record
from rideflow.redis.connections import open_redis, redis_url
from rideflow.redis.pipelined import PipelinedRedis
from rideflow.redis.scripts import Scripts
from rideflow.restaurants.cache import MenuCache
from rideflow.restaurants.orders import FoodOrders
from rideflow.restaurants.store import Restaurants
from rideflow.services import build_services

log = logging.getLogger("rideflow.api")


class RideflowApp(FastAPI):
    """FastAPI, with the WebSocket paths of `ws.SOCKETS` served ahead of the HTTP middleware
    and router (nothing of theirs applies to a socket; each would stay alive with it)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            socket_app = ws.SOCKETS.get(scope["path"])
            if socket_app is not None:
                scope["app"] = self
                await socket_app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


DESCRIPTION = """
Real-time dispatch for ride-hailing and delivery. Ride requests are accepted at once (202) and
queued per city; dispatcher workers find the best available driver, reserve them and offer them
the order; the driver accepts or rejects within a window, and a rejection or a lapse moves on to
the next driver at once. Deliveries can also be assigned synchronously (`POST /v1/delivery/assign`).

Every error is `application/problem+json` (RFC 9457). A request that changes state and has a
body must send it as `Content-Type: application/json` (415 otherwise; the token route takes the
OAuth2 form). Requests are rate limited per user once signed in, per client address otherwise;
limited responses carry `RateLimit-Policy` and `RateLimit` headers.
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
    record: Record
    request_log: RequestLog | None
    menus: MenuCache
    restaurants: Restaurants
    food_orders: FoodOrders
    tokens: AccessTokens
    pins: TripPins
    identity: Identity
    api_keys: ApiKeys
    hub: Hub
    gateway: Gateway


def _with_pages(app: RideflowApp) -> RideflowApp:
    """The pages a browser opens: the API's documentation and the dashboard, both offline."""
    docs.install(app)
    dashboard.install(app)
    return app


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; long-lived resources are made in the lifespan, not here."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        tokens = AccessTokens(settings, jwt_secret(settings))  # refuses a weak secret first
        redis = await open_redis(settings, "api")
        services = build_services(settings, redis)
        # The check runs on every request: it gets a pipelined connection of its own.
        url = redis_url(settings)
        limits = PipelinedRedis(url, "api-limits") if PipelinedRedis.supports(url) else redis
        if settings.database_auto_migrate:
            try:
                await services.record.migrate()
            except Exception as exc:  # the API serves what Redis holds; SQL routes say 503
                log.error("the record's database could not be migrated: %s", exc)
        request_log = RequestLog(redis, settings) if settings.request_log_enabled else None
        identity = build_identity(
            settings, redis, services.scripts, services.record, services.drivers, tokens
        )
        if request_log is not None:
            request_log.start()

        async def unreachable(driver_id: str) -> None:
            reason = f"driver {driver_id} stopped answering heartbeats"
            await set_driver_status(services.drivers, services.offers, driver_id, "offline", reason)

        hub = Hub(settings, redis, services.offers, services.drivers, unreachable, services.pins)
        await hub.start()
        identity.revocations.listeners.append(hub.revoked)  # closes the account's sockets
        await identity.revocations.start()
        gateway = Gateway(settings, hub, services.offers, services.drivers)
        freeze_startup_objects()
        try:
            yield AppState(
                settings=settings,
                redis=redis,
                orders=services.orders,
                offers=services.offers,
                assigner=services.assigner,
                jobs=services.jobs,
                drivers=services.drivers,
                limiter=RateLimiter(Scripts.register(limits), settings),
                record=services.record,
                request_log=request_log,
                menus=services.menus,
                restaurants=services.restaurants,
                food_orders=services.food_orders,
                tokens=tokens,
                pins=services.pins,
                identity=identity,
                api_keys=identity.api_keys,
                hub=hub,
                gateway=gateway,
            )
        finally:
            await identity.revocations.stop()
            await hub.stop()
            await gateway.positions.stop()
            if request_log is not None:
                await request_log.stop()  # what is buffered is sent before Redis is closed
            await services.record.dispose()
            if isinstance(limits, PipelinedRedis):
                await limits.aclose()
            await redis.aclose()
            metrics_families.process_ended()

    app = _with_pages(
        RideflowApp(
            title="RideFlow",
            version=__version__,
            description=DESCRIPTION,
            lifespan=lifespan,
            docs_url=None,  # served offline by `docs`, not from a CDN
            redoc_url=None,
            swagger_ui_oauth2_redirect_url=docs.OAUTH2_REDIRECT,
        )
    )
    problems.install(app)
    for module in (
        rides,
        deliveries,
        history,
        offers,
        drivers,
        jobs,
        restaurants,
        food_orders,
        legacy,
        admin,
        dashboard,
        auth,
        health,
        metrics,
    ):
        app.include_router(module.router)
    if settings.rate_limit_enabled:
        app.add_middleware(RateLimitMiddleware, trusted=settings.trusted_networks)
    app.add_middleware(JsonBodyMiddleware)  # headers only: refused before any Redis call
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # outside the others, so that their refusals carry CORS headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-API-Key"],
            expose_headers=["RateLimit", "RateLimit-Policy", "Retry-After", "Location"],
        )
    # Outermost: it sees every answer, 413 and 429 included; it times each request for the
    # metrics, and logs it when the request log is on.
    app.add_middleware(RequestLogMiddleware, trusted=settings.trusted_networks)
    return app
