"""One factory per external resource, named for the process that owns it."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rideflow.config import Settings

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url(settings: Settings) -> str:
    """The Redis to use: the configured one, else the managed one `rideflow up` starts."""
    if settings.redis_url:
        return settings.redis_url
    return f"redis://127.0.0.1:{settings.managed_redis_port}/0"


def create_redis(settings: Settings, owner: str, *, socket_timeout: float = 5.0) -> Redis:
    """A Redis client whose pool waits for a free connection instead of failing past its size.

    Connection errors are retried briefly, then surface so that callers can answer 503 and the
    pool reconnects by itself once Redis is back.
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
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return Redis.from_pool(pool)  # closing the client closes the pool
