"""redis-py's asyncio cluster client with two client-side costs taken out. Both showed in figure 23
of `make bench` (positions ingest, a cluster vs a single Redis): a 500-position batch is one script
call naming 502 keys of one city, and it cost the API process 5.3 ms of CPU on a cluster against
3.8 ms on a single Redis; with both changes, ~3.8 ms on either.

- redis-py packs commands in Python; here every node's connections pack with hiredis, as the
  single client's `PackedConnection` does (about two thirds of the difference).
- redis-py hashes every key of a script call, twice per call (once to choose the command's
  policy, once its node), to check that they share one slot. Redis Cluster checks that itself
  and refuses a call whose keys span slots (CROSSSLOT), so the slot of the first key is enough.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.connection import Connection

from rideflow.redis.connections import PackedConnection

SCRIPT_CALLS = {"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"}


class RideflowCluster(RedisCluster):
    """`RedisCluster` with hiredis packing (over plain TCP) and a script routed by its first key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.connection_kwargs.get("connection_class") is Connection:  # not TLS
            # redis-py takes no connection class for a cluster, but makes each node it learns of
            # from these kwargs; the startup nodes exist already.
            self.connection_kwargs["connection_class"] = PackedConnection
            for node in self.nodes_manager.startup_nodes.values():
                node.connection_class = PackedConnection

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if command.upper() in SCRIPT_CALLS and len(args) > 2 and int(args[1]) > 1:
            return self.keyslot(args[2])  # args: sha or body, number of keys, keys...
        return await super()._determine_slot(command, *args)
