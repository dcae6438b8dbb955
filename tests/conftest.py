"""Fixtures: one throwaway redis-server per session, flushed between tests; settings built per
test; the app in-process (ASGI) or as real processes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis

from rideflow.api.app import create_app
from rideflow.config import Settings
from tests.servers import ApiService, DispatcherService, JobWorkerService, RedisServer, Service

BLR = (12.9716, 77.5946)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    client = sync_redis.Redis(port=server.port)
    # Refuse to run against data we did not make.
    assert client.dbsize() == 0, f"redis on port {server.port} is not empty"
    client.close()
    yield server
    server.stop()


@pytest.fixture
def flushed(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's Redis, empty at the start of the test."""
    client = sync_redis.Redis(port=redis_server.port)
    client.flushall()
    client.close()
    yield redis_server


@pytest.fixture
async def redis(flushed: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(flushed.url, decode_responses=True)
    yield client
    await client.aclose()


def settings_for(url: str, **overrides: Any) -> Settings:
    """Test settings: a short deadline and claim timeout, no rate limits unless asked for."""
    values: dict[str, Any] = {
        "redis_url": url,
        "rate_limit_enabled": False,
        "ride_deadline_s": 3.0,
        "delivery_deadline_s": 3.0,
        "retry_base_s": 0.1,
        "retry_max_s": 0.5,
        "claim_idle_ms": 1000,
        "retry_lease_ms": 1000,
        "job_claim_idle_ms": 1000,
        "job_retry_base_s": 0.05,
        "job_retry_max_s": 0.2,
        "job_modules": ["tests.jobtasks"],
    }
    values.update(overrides)
    return Settings(**values)


def env_of(settings: Settings) -> dict[str, str]:
    """The `RIDEFLOW_*` environment that makes a child process build the same settings."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            # No variable reads as None: only a field whose default is None may be left out.
            assert Settings.model_fields[name].default is None, f"{name}=None cannot be passed"
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        env[f"RIDEFLOW_{name.upper()}"] = text
    return env


@pytest.fixture
def settings(flushed: RedisServer) -> Settings:
    return settings_for(flushed.url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, lifespan run, over ASGI."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rideflow") as c:
            yield c


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start RideFlow processes: `services("api", settings)`; all are stopped at the end."""
    started: list[Service] = []

    def start(kind: str, settings: Settings, name: str | None = None, **kw: Any) -> Service:
        cls = {"api": ApiService, "dispatcher": DispatcherService, "jobs": JobWorkerService}[kind]
        service = cls(env_of(settings), tmp_path, name=name or f"{kind}{len(started)}", **kw)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def offset(
    lat: float, lng: float, north_m: float = 0.0, east_m: float = 0.0
) -> tuple[float, float]:
    """A point `north_m` north and `east_m` east of (lat, lng)."""
    import math

    dlat = north_m / 111_320.0
    dlng = east_m / (111_320.0 * math.cos(math.radians(lat)))
    return lat + dlat, lng + dlng
