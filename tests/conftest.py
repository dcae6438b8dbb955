"""Fixtures: one throwaway redis-server per session, flushed between tests; settings built per
test; the app, dispatchers and job workers in the test's own event loop, or as real processes
(tests/e2e only)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from redis.asyncio import Redis

from rideflow.api.app import create_app
from rideflow.config import Settings
from rideflow.redis.connections import open_redis
from rideflow.workers.dispatcher import DispatcherWorker
from rideflow.workers.jobs import JobWorker
from tests import auth
from tests.cluster import RedisClusterServer
from tests.record import record_database
from tests.servers import (
    ApiService,
    DispatcherService,
    JobWorkerService,
    RecorderService,
    RedisServer,
    Service,
)

BLR = (12.9716, 77.5946)
DATA_DIR = tempfile.mkdtemp(prefix="rideflow-test-")
"""Where processes a test starts keep their files (the default SQLite record among them)."""
E2E_TIMEOUT_S = 180
"""Real processes start slowly on a loaded machine: each e2e test gets this long unless it names
its own limit; the rest get the 60 s of pyproject.toml."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis",
        choices=["single", "cluster"],
        default="single",
        help="what the tests' throwaway Redis is: one redis-server, or a 3-master Redis Cluster",
    )


def on_cluster(config: pytest.Config) -> bool:
    return bool(config.getoption("--redis") == "cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cluster = on_cluster(config)
    for item in items:
        if cluster and item.get_closest_marker("single_redis"):
            reason = item.get_closest_marker("single_redis").args  # type: ignore[union-attr]
            item.add_marker(pytest.mark.skip(reason=f"single Redis only: {reason[0]}"))
        if "e2e" in item.path.parts and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))


@pytest.fixture(params=["sqlite", "postgresql"])
async def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated record database, once on SQLite and once on PostgreSQL + PostGIS."""
    async with record_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """The session's throwaway Redis: one redis-server, or with `--redis cluster` a 3-master
    Redis Cluster (typed as the single server: both have `url`, `flushall`, `dbsize`, `stop`)."""
    directory = tmp_path_factory.mktemp("redis")
    server = (
        cast(RedisServer, RedisClusterServer(directory))
        if on_cluster(request.config)
        else RedisServer(directory)
    ).start()
    # Refuse to run against data we did not make.
    assert server.dbsize() == 0, f"redis at {server.url} is not empty"
    yield server
    server.stop()


@pytest.fixture
def flushed(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's Redis, empty at the start of the test."""
    redis_server.flushall()
    yield redis_server


@pytest.fixture
async def redis(flushed: RedisServer) -> AsyncIterator[Redis]:
    """A client of the test's Redis (or cluster), made as RideFlow's processes make theirs
    (replies decoded, no replays)."""
    client = await open_redis(Settings(redis_url=flushed.url), "tests")
    yield client
    await client.aclose()


TEST_JWT_SECRET = auth.TEST_JWT_SECRET


def settings_for(url: str, **overrides: Any) -> Settings:
    """Test settings: a short deadline and claim timeout, no rate limits unless asked for."""
    values: dict[str, Any] = {
        "redis_url": url,
        "data_dir": DATA_DIR,
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
        "jwt_secret": TEST_JWT_SECRET,
    }
    values.update(overrides)
    return Settings(**values)


def env_of(settings: Settings) -> dict[str, str]:
    """The `RIDEFLOW_*` environment that makes a child process build the same settings."""
    env = {}
    for name, dumped in settings.model_dump(mode="json").items():
        secret = getattr(settings, name)
        # A secret is dumped as "**********".
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else dumped
        if value is None:
            # No variable reads as None: only a field whose default is None may be left out.
            assert Settings.model_fields[name].default is None, f"{name}=None cannot be passed"
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        env[f"RIDEFLOW_{name.upper()}"] = text
    return env


async def run_rideflow(
    settings: Settings, *args: str, stdin: str = "", timeout_s: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m rideflow *args` as a real process with `settings` (and `env`) as its only
    `RIDEFLOW_*` environment; its output captured."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RIDEFLOW_")}
    environ.update(env_of(settings), **env)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "rideflow", *args],
        input=stdin,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
    )


@pytest.fixture
def settings(flushed: RedisServer) -> Settings:
    return settings_for(flushed.url)


@contextlib.asynccontextmanager
async def api_client(
    settings: Settings, headers: dict[str, str] | None = None, **transport: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app built from `settings`, lifespan run, in-process over ASGI. It acts as the tests'
    ADMIN (`tests.auth.ADMIN_ID`) unless `headers` say otherwise: `headers={}` is an anonymous
    client, `headers=tests.auth.customer(settings, "c1")` a customer's."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        asgi = httpx.ASGITransport(app=manager.app, **transport)
        sent = auth.admin(settings) if headers is None else headers
        async with httpx.AsyncClient(transport=asgi, base_url="http://rideflow", headers=sent) as c:
            yield c


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, lifespan run, over ASGI."""
    async with api_client(settings) as c:
        yield c


STOP_WITHIN_S = 30.0


@dataclass
class InProcess:
    """A dispatcher or job worker running as a task of the test's event loop."""

    name: str
    task: asyncio.Task[Counter[str]]
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)

    def alive(self) -> bool:
        return not self.task.done()

    async def stop(self) -> Counter[str]:
        """Set its stop event and wait for it to end; its counters. Its failure fails the test."""
        self.stop_event.set()
        done, _ = await asyncio.wait([self.task], timeout=STOP_WITHIN_S)
        if not done:
            raise AssertionError(f"{self.name} did not stop within {STOP_WITHIN_S} s:\n{stacks()}")
        return self.task.result()


def stacks() -> str:
    """Where every task of the running loop is, for a worker that would not stop."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=out)
        task.print_stack(limit=8, file=out)
    return out.getvalue()


class Workers:
    """Start dispatchers and job workers in-process: `await workers.dispatcher(settings)`."""

    def __init__(self) -> None:
        self.started: list[InProcess] = []

    def _start(self, name: str, worker: DispatcherWorker | JobWorker) -> InProcess:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name=name)
        running = InProcess(name, task, stop)
        self.started.append(running)
        return running

    def dispatcher(
        self, settings: Settings, concurrency: int = 8, cities: list[str] | None = None
    ) -> InProcess:
        """A dispatcher for `cities` (all configured ones by default)."""
        codes = cities or [c.code for c in settings.cities]
        name = f"dispatcher{len(self.started)}"
        return self._start(name, DispatcherWorker(settings, codes, concurrency))

    def jobs(self, settings: Settings, concurrency: int = 16, *, burst: bool = False) -> InProcess:
        """A job worker; in burst mode it ends by itself once nothing is left to do."""
        name = f"jobs{len(self.started)}"
        return self._start(name, JobWorker(settings, concurrency, burst=burst))

    async def stop_all(self) -> None:
        errors = []
        for running in self.started:
            try:
                await running.stop()
            except BaseException as exc:  # stop the rest before failing the test
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(autouse=True)
def _no_gc_freeze(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API and the workers freeze their start-up objects out of the collector's sight, which
    suits a long-lived process; a test process that starts hundreds of apps and workers would
    never collect anything again (nor report the sockets a test left open)."""
    monkeypatch.setattr(gc, "freeze", lambda: None)


@pytest.fixture
async def workers() -> AsyncIterator[Workers]:
    """Dispatchers and job workers in the test's event loop, stopped (and checked) at the end."""
    started = Workers()
    yield started
    await started.stop_all()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start RideFlow processes: `services("api", settings)`; all are stopped at the end."""
    started: list[Service] = []

    def start(kind: str, settings: Settings, name: str | None = None, **kw: Any) -> Service:
        cls = {
            "api": ApiService,
            "dispatcher": DispatcherService,
            "jobs": JobWorkerService,
            "recorder": RecorderService,
        }[kind]
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
