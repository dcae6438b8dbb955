"""The cluster client (`rideflow.redis.cluster_client`) on a real 3-master Redis Cluster of the
test's own: its connections to every master, the startup node and those it learns of, pack
commands with hiredis as the single client's do, and what they send round-trips exactly; a
script goes to the master of its first key, Redis still refuses one whose keys span slots, and a
script whose slot moved to another master is re-sent there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError

from rideflow.config import Settings
from rideflow.redis.connections import PackedConnection, is_cluster, open_redis
from tests.cluster import ClusterNode, RedisClusterServer


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


def tags_on(client: RedisCluster, count: int, *, same_node: bool) -> list[str]:
    """`count` keys of different slots, on one master (or on different masters)."""
    found: list[str] = []
    tag = 0
    while len(found) < count:
        key = f"rf:{{c{tag}}}:k"
        tag += 1
        nodes = {client.get_node_from_key(k).name for k in found}
        here = client.get_node_from_key(key).name
        if not found or (here in nodes if same_node else here not in nodes):
            found.append(key)
    return found


@pytest.mark.parametrize("same_node", [True, False])
async def test_redis_refuses_a_script_whose_keys_span_slots(
    client: RedisCluster, same_node: bool
) -> None:
    first, second = tags_on(client, 2, same_node=same_node)
    with pytest.raises(ClusterCrossSlotError):  # Redis said CROSSSLOT
        await client.eval("redis.call('SET', KEYS[1], 1) return 1", 2, first, second)
    assert await client.exists(first, second) == 0


async def test_a_script_runs_on_the_master_of_its_keys(
    client: RedisCluster, cluster: RedisClusterServer
) -> None:
    city = [f"rf:{{blr}}:driver:d{i}" for i in range(5)]
    script = "for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1]) end return #KEYS"
    assert await client.eval(script, len(city), *city, "here") == 5
    owner = node_of(cluster, client.get_node_from_key(city[0]).port)
    with owner.client() as direct:
        assert direct.mget(city) == ["here"] * 5


def node_of(cluster: RedisClusterServer, port: int) -> ClusterNode:
    return next(n for n in cluster.nodes if n.port == port)


async def test_a_script_whose_slot_moved_is_sent_to_the_new_master(
    client: RedisCluster, cluster: RedisClusterServer
) -> None:
    """The slot of {moving} is handed to another master behind the client's back (it is empty,
    so CLUSTER SETSLOT ... NODE on every master moves it at once): the client's next call meets
    MOVED there, learns the new map, and the call runs once, on the new master."""
    keys = ["rf:{moving}:a", "rf:{moving}:b"]
    script = "return redis.call('INCRBY', KEYS[1], 1) + redis.call('INCRBY', KEYS[2], 10)"
    slot = key_slot(keys[0].encode())
    source = node_of(cluster, client.get_node_from_key(keys[0]).port)
    target = next(n for n in cluster.primaries() if n.port != source.port)
    with target.client() as t:
        target_id = t.cluster("myid")
    for node in (target, source, *cluster.primaries()):
        with node.client() as c:
            c.cluster("setslot", slot, "node", target_id)
    assert await client.eval(script, 2, *keys) == 11
    assert client.get_node_from_key(keys[0]).port == target.port
    with target.client() as t:
        assert t.mget(keys) == ["1", "10"]
    assert await client.eval(script, 2, *keys) == 22
