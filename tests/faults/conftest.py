"""Fixtures of the fault suite (`make test-faults`): a Redis with its append-only file on that
a test may SIGKILL and start again, RideFlow processes started as `rideflow up` starts them, and
the figures each fault produced, printed at the end of the run (with or without `-s`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.aof_redis import AofRedis, Fsync

from rideflow.config import Settings
from tests.conftest import settings_for
from tests.faults.pg_cluster import PgCluster, skip_unless_available
from tests.servers import Service, free_port

FIGURES: list[str] = []
"""One line per fault, printed in the terminal summary."""


def fault_settings(redis_url: str, **overrides: Any) -> Settings:
    """The test settings, with room for a fault: orders search for a minute (a short outage
    must not turn them into NO_DRIVER_FOUND), and an offer whose answer was lost with Redis
    lapses after 5 s."""
    values: dict[str, Any] = {"ride_deadline_s": 60.0, "ride_offer_window_s": 5.0}
    return settings_for(redis_url, **(values | overrides))


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[Callable[[Fsync], AofRedis]]:
    """Start a redis-server with AOF (`appendfsync` as asked) in a directory of the test's own;
    every one started is stopped at the end."""
    started: list[AofRedis] = []

    def start(fsync: Fsync) -> AofRedis:
        server = AofRedis(free_port(), tmp_path / f"redis-{len(started)}", fsync)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def stack(
    services: Callable[..., Service],
) -> Callable[..., tuple[Service, list[Service]]]:
    """The API and two dispatchers on `settings`, as `rideflow up` runs them."""

    def start(settings: Settings, dispatchers: int = 2) -> tuple[Service, list[Service]]:
        api = services("api", settings)
        workers = [
            services("dispatcher", settings, name=f"dispatcher-{n}")
            for n in range(1, dispatchers + 1)
        ]
        return api, workers

    return start


@pytest.fixture
def report() -> Callable[[str], None]:
    """Record a figure the fault produced: printed now (`-s`) and in the terminal summary."""

    def say(line: str) -> None:
        print(line)
        FIGURES.append(line)

    return say


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("fault figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of the test's own, started; destroyed at the end (skipped, with the
    reason, where PostgreSQL or PostGIS is not installed)."""
    skip_unless_available()
    cluster = PgCluster().init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
