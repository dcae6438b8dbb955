"""The record's databases for tests: SQLite in a temporary directory, and a throwaway database
created (and dropped) on the PostgreSQL at 127.0.0.1:5432 (`RIDEFLOW_TEST_POSTGRES` names
another). Without a reachable PostgreSQL with PostGIS the PostgreSQL tests are skipped with the
reason, except under `CI=true`, where that is a failure."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from rideflow.record import db

POSTGRES_ADMIN = os.environ.get(
    "RIDEFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run under CI=true: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[str]:
    """A new empty database with PostGIS; its SQLAlchemy URL. Dropped afterwards."""
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(f"no PostgreSQL at {POSTGRES_ADMIN} ({exc})")
        raise  # unreachable
    name = f"rideflow_test_{secrets.token_hex(4)}"
    try:
        available = await admin.fetchval(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"
        )
        if not available:
            unavailable(
                "PostGIS is not installed for the local PostgreSQL "
                "(sudo apt-get install -y postgresql-15-postgis-3, or scripts/ensure-system.sh)"
            )
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def record_database(kind: str, folder: Path, *, migrate: bool = True) -> AsyncIterator[str]:
    """A record database of `kind` ('sqlite' or 'postgresql'), migrated to head unless told."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{folder / 'record.db'}"
        if migrate:
            await db.upgrade(url)
        yield url
        return
    async with throwaway_postgres() as url:
        if migrate:
            await db.upgrade(url)
        yield url
