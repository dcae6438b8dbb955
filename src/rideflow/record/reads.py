"""Sessions for the API's reads of the record. A database that cannot be reached raises a plain
`OSError` from the driver's connect (asyncpg does), which SQLAlchemy does not wrap: it is wrapped
here as an `OperationalError`, so the API answers it like any other outage (503, Retry-After)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from rideflow.record.db import Record


@asynccontextmanager
async def reading(record: Record) -> AsyncIterator[AsyncSession]:
    """A session in a transaction, for reads."""
    try:
        async with record.session(read_only=True) as session, session.begin():
            yield session
    except (OSError, TimeoutError) as exc:
        raise OperationalError("connect", None, exc) from exc
