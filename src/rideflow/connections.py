"""One factory per external resource, named for the process that owns it."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from rideflow.config import Settings


def redis_url(settings: Settings) -> str:
    """The Redis to use: the configured one, else the managed one `rideflow up` starts."""
    if settings.redis_url:
        return settings.redis_url
    return f"redis://127.0.0.1:{settings.managed_redis_port}/0"


def create_redis(settings: Settings, owner: str, *, socket_timeout: float = 5.0) -> Redis:
    """A Redis client whose pool waits for a free connection instead of failing past its size.

    Connection errors surface at once, so that callers can answer 503; the pool reconnects by
    itself once Redis is back.
    """
    pool = BlockingConnectionPool.from_url(
        redis_url(settings),
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
    )
    return Redis.from_pool(pool)  # closing the client closes the pool
