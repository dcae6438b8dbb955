"""One factory per external resource, named for the process that owns it.

`RIDEFLOW_REDIS_URL` names a single Redis (`redis://`, `rediss://`, `unix://`) or a Redis Cluster
(`redis+cluster://host:port`, `rediss+cluster://`: any one node; the client learns the others).
On a cluster the clients are redis-py's own `RedisCluster`, typed here as `Redis`: the commands
RideFlow sends are the ones both answer alike (every multi-key command and script names keys of
one slot), and the few places that differ ask `is_cluster`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, cast

import hiredis
import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import DataError, RedisError
from redis.maint_notifications import MaintNotificationsConfig

from rideflow.config import Settings

log = logging.getLogger("rideflow.redis")


def redis_url(settings: Settings) -> str:
    """The Redis to use: the configured one, else the managed one `rideflow up` starts."""
    if settings.redis_url:
        return settings.redis_url
    return f"redis://127.0.0.1:{settings.managed_redis_port}/0"


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """The plain URL of the cluster node `url` names (`redis+cluster://` -> `redis://`), or
    None when `url` names a single Redis."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    return f"{plain}{sep}{rest}" if sep and plain else None


def is_cluster(client: object) -> bool:
    """Whether `client` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def slot_groups(client: object, keys: list[str]) -> list[list[str]]:
    """`keys` split into groups a single multi-key command may name (XREAD over several streams,
    say): one group on a single Redis, one per hash slot on a cluster; order kept within each."""
    if not is_cluster(client) or len(keys) < 2:
        return [keys] if keys else []
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(key_slot(key.encode()), []).append(key)
    return list(groups.values())


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
    plain = cluster_url(url)
    if plain is not None:
        return _create_cluster(settings, plain, owner, socket_timeout)
    extra: dict[str, Any] = {}
    if url.startswith("redis://"):
        extra["connection_class"] = PackedConnection
    pool = BlockingConnectionPool.from_url(
        url,
        **extra,
        **_options(owner, socket_timeout),
        max_connections=settings.redis_pool_size,
        timeout=5,
    )
    return Redis.from_pool(pool)  # closing the client closes the pool


def _options(owner: str, socket_timeout: float) -> dict[str, Any]:
    """What every client of RideFlow's, single or cluster, is made with."""
    return {
        "socket_connect_timeout": 2,
        "socket_timeout": socket_timeout,
        "health_check_interval": 30,
        "client_name": f"rideflow-{owner}",
        "decode_responses": True,
        # No automatic retries: a command whose reply was lost may have run, and replaying a
        # script (enqueue, reserve, finish) is not safe. Callers answer 503 or retry by design.
        "retry": Retry(NoBackoff(), 0),
        # With maintenance notifications on (redis-py's "auto" default, for Redis Enterprise
        # endpoints that move), the pool skips its check of a connection taken from it, so a
        # socket Redis closed (a restart) is used and fails: a 503 per stale connection once
        # Redis is back. Measured here: tests/e2e/test_outage.py fails without this line.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }


def _create_cluster(settings: Settings, url: str, owner: str, socket_timeout: float) -> Redis:
    """redis-py's cluster client, with the single client's choices: no replays (a lost reply
    may have run; a connection error marks the topology for a refresh on the next command, which
    finds a promoted replica), and the slots a dead master held fail alone instead of the whole
    cluster (`require_full_coverage=False`)."""
    from rideflow.redis.cluster_client import RideflowCluster  # it subclasses what is here

    cluster = RideflowCluster.from_url(
        url,
        **_options(owner, socket_timeout),
        max_connections=settings.redis_cluster_node_connections,
        require_full_coverage=False,
    )
    return cast(Redis, cluster)


async def open_redis(settings: Settings, owner: str, *, socket_timeout: float = 5.0) -> Redis:
    """`create_redis`, and on a cluster the slot map learnt before the client is shared."""
    client = create_redis(settings, owner, socket_timeout=socket_timeout)
    await initialized(client)
    return client


async def initialized(client: Redis) -> None:
    """Have a cluster client learn the cluster's slot map now, before concurrent use: its
    pubsub does not learn it by itself, and commands that set off the first learning together
    were seen to fail ("Connection closed by server": redis-py replaces the startup node's
    connections under them). A cluster that does not answer now is learnt by the first command
    once it does."""
    if isinstance(client, RedisCluster):
        try:
            await client.initialize()
        except RedisError as exc:
            log.warning("Redis Cluster not reachable yet (%s); will retry on first use", exc)


async def disconnect(client: Redis) -> None:
    """Close every connection `client` holds (blocked reads end at once); it reconnects on its
    next command."""
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():
            await node.disconnect()
    else:
        await client.connection_pool.disconnect()


def sync_client(url: str, **options: Any) -> sync_redis.Redis:
    """A blocking client of the Redis (or the cluster) `url` names, for the CLI and tests."""
    plain = cluster_url(url)
    if plain is not None:
        return cast(sync_redis.Redis, sync_redis.RedisCluster.from_url(plain, **options))
    return sync_redis.Redis.from_url(url, **options)
