"""The cluster client on a real 3-master Redis Cluster of the test's own: its connections to
every master, the startup node and those it learns of, pack commands with hiredis as the single
client's do (`PackedConnection`), and what they send round-trips exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import RedisCluster

from rideflow.config import Settings
from rideflow.redis.connections import PackedConnection, is_cluster, open_redis
from tests.cluster import RedisClusterServer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    server = RedisClusterServer(Path(tmp_path_factory.mktemp("cluster"))).start()
    assert server.dbsize() == 0
    yield server
    server.stop()


@pytest.fixture
async def client(cluster: RedisClusterServer) -> AsyncIterator[RedisCluster]:
    cluster.flushall()
    redis = await open_redis(Settings(redis_url=cluster.url), "tests")
    assert is_cluster(redis)
    assert isinstance(redis, RedisCluster)
    yield redis
    await redis.aclose()


def keys_on_every_master(client: RedisCluster) -> list[str]:
    """One key per master: hash tags tried in turn until each master holds one."""
    by_node: dict[str, str] = {}
    tag = 0
    while len(by_node) < len(client.get_primaries()):
        key = f"rf:{{t{tag}}}:k"
        by_node.setdefault(client.get_node_from_key(key).name, key)
        tag += 1
    return list(by_node.values())


async def test_every_master_is_reached_through_packed_connections(client: RedisCluster) -> None:
    spread = keys_on_every_master(client)
    assert len(spread) == 3
    for i, key in enumerate(spread):
        await client.set(key, f"v{i}")
    assert [await client.get(key) for key in spread] == ["v0", "v1", "v2"]
    used = [conn for node in client.get_primaries() for conn in node._connections]
    assert {node.name for node in client.get_primaries() if node._connections} == {
        client.get_node_from_key(key).name for key in spread
    }
    assert used and all(type(conn) is PackedConnection for conn in used)


async def test_a_script_with_many_arguments_round_trips_exactly(client: RedisCluster) -> None:
    keys = [f"rf:{{blr}}:driver:d{i}" for i in range(300)]
    args = [1.5, -3, "ü", "", "x" * 1000, *range(1000)]
    script = "return {#KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4], #ARGV[5], ARGV[#ARGV]}"
    reply = await client.eval(script, len(keys), *keys, *args)
    assert reply == [300, "1.5", "-3", "ü", "", 1000, "999"]


async def test_a_two_word_command_is_sent_as_two_words(client: RedisCluster) -> None:
    stream = "rf:{blr}:requests"
    await client.xgroup_create(stream, "dispatchers", id="0", mkstream=True)
    groups = await client.xinfo_groups(stream)
    assert [g["name"] for g in groups] == ["dispatchers"]
