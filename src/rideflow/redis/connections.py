"""One factory per external resource, named for the process that owns it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import DataError
from redis.maint_notifications import MaintNotificationsConfig

from rideflow.config import Settings


def redis_url(settings: Settings) -> str:
    """The Redis to use: the configured one, else the managed one `rideflow up` starts."""
    if settings.redis_url:
        return settings.redis_url
    return f"redis://127.0.0.1:{settings.managed_redis_port}/0"


class PackedConnection(Connection):
    """A TCP connection that packs commands with hiredis (C) instead of redis-py's Python
    packer, which costs more than Redis itself for scripts with many arguments (job batches)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return [_pack(args)]

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(_pack(tuple(c)) for c in commands)]


def _pack(args: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol. redis-py sends some command names as one string
    ('XINFO GROUPS'); Redis wants words. A value Redis cannot take is a `DataError`, as with
    redis-py's own packer."""
    first = args[0]
    if (isinstance(first, str) and " " in first) or (isinstance(first, bytes) and b" " in first):
        args = (*first.split(), *args[1:])
    try:
        return bytes(hiredis.pack_command(args))
    except TypeError as exc:
        raise DataError(f"invalid input: {exc}") from exc


def create_redis(settings: Settings, owner: str, *, socket_timeout: float = 5.0) -> Redis:
    """A Redis client whose pool waits for a free connection instead of failing past its size.

    Connection errors surface at once, so that callers can answer 503; the pool reconnects by
    itself once Redis is back, and a pooled connection that Redis closed meanwhile (it was
    restarted) is replaced when taken from the pool instead of failing its next command.
    """
    url = redis_url(settings)
    extra: dict[str, Any] = {}
    if url.startswith("redis://"):
        extra["connection_class"] = PackedConnection
    pool = BlockingConnectionPool.from_url(
        url,
        **extra,
        max_connections=settings.redis_pool_size,
        timeout=5,
        socket_connect_timeout=2,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        client_name=f"rideflow-{owner}",
        decode_responses=True,
        # No automatic retries: a command whose reply was lost may have run, and replaying a
        # script (enqueue, reserve, finish) is not safe. Callers answer 503 or retry by design.
        retry=Retry(NoBackoff(), 0),
        # With maintenance notifications on (redis-py's "auto" default, for Redis Enterprise
        # endpoints that move), the pool skips its check of a connection taken from it, so a
        # socket Redis closed (a restart) is used and fails: a 503 per stale connection once
        # Redis is back. Measured here: tests/e2e/test_outage.py fails without this line.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return Redis.from_pool(pool)  # closing the client closes the pool
