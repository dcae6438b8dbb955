"""Bare FastAPI + one XADD per request: the floor RideFlow's intake is compared against."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field
from redis.asyncio import BlockingConnectionPool, Redis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
STREAM_KEY = "bench:{baseline}:requests"
STREAM_MAXLEN = 100_000
POOL_SIZE = 64


class Point(BaseModel):
    """A WGS84 coordinate."""

    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)


class RideRequest(BaseModel):
    """The ride request body."""

    rider_id: str = Field(min_length=1, max_length=128)
    pickup: Point
    dropoff: Point


def create_app(redis_url: str | None = None) -> FastAPI:
    """The baseline app; redis_url overrides RIDEFLOW_REDIS_URL."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Own the Redis pool for the life of the server, not of the import."""
        url = redis_url or os.environ.get("RIDEFLOW_REDIS_URL", DEFAULT_REDIS_URL)
        # Blocking pool: under overload requests wait for a connection instead of failing.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=5, socket_connect_timeout=2
        )
        client = Redis(connection_pool=pool)
        try:
            # Fail at startup rather than on the first request if the URL is wrong.
            await client.ping()
            app.state.redis = client
            yield
        finally:
            await client.aclose()
            await pool.aclose()

    app = FastAPI(title="rideflow-baseline", lifespan=lifespan, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        """Liveness without touching Redis, for readiness polling."""
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/v1/rides", status_code=202)
    async def create_ride(ride: RideRequest, request: Request) -> Response:
        """Queue the ride request on the stream and answer 202."""
        ride_id = uuid.uuid4().hex
        redis: Redis = request.app.state.redis
        await redis.xadd(
            STREAM_KEY,
            {"ride_id": ride_id, "body": ride.model_dump_json()},
            maxlen=STREAM_MAXLEN,
            approximate=True,
        )
        # orjson by hand: ORJSONResponse is deprecated in this FastAPI and would warn.
        return Response(
            orjson.dumps({"ride_id": ride_id, "status": "QUEUED"}),
            status_code=202,
            media_type="application/json",
        )

    return app


app = create_app()
