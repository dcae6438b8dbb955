"""A throwaway Redis Cluster for tests; it lives in `bench/cluster.py`, which figure 23 of
`make bench` shares."""

from bench.cluster import NODE_TIMEOUT_MS, START_TIMEOUT_S, ClusterNode, RedisClusterServer

__all__ = ["NODE_TIMEOUT_MS", "START_TIMEOUT_S", "ClusterNode", "RedisClusterServer"]
