"""A throwaway Redis Cluster: redis-servers with `--cluster-enabled yes` on free ports, joined by
`redis-cli --cluster create`; never the machine's shared Redis. The tests' cluster
(`tests/cluster.py` re-exports it) and the cluster of figure 23 of `make bench`."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis as sync_redis

from bench.harness import free_port
from rideflow.process import die_with_parent
from rideflow.workers.supervisor import stop_process

NODE_TIMEOUT_MS = 1000
"""How long a master may be unreachable before its replica takes over (redis.conf's
`cluster-node-timeout`; 15 s by default, short here so failover tests are quick)."""
START_TIMEOUT_S = 30.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_S) -> None:
    """Poll `condition` every 50 ms until it holds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class ClusterNode:
    """One redis-server of the cluster, its data in a directory of its own."""

    def __init__(self, directory: Path, *, durable: bool = False) -> None:
        self.port, self.bus_port = free_port(), free_port()
        self.dir = directory / f"node-{self.port}"
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (sudo apt-get install redis-server)")
        return [
            binary,
            *("--port", str(self.port), "--cluster-port", str(self.bus_port)),
            *("--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""),
            *("--logfile", "redis.log", "--cluster-enabled", "yes"),
            *("--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--appendonly", "yes" if self.durable else "no"),
        ]

    def start(self) -> ClusterNode:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv(),
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509
        )
        wait_for(self.answers, f"cluster node {self.address}")
        return self

    def client(self) -> sync_redis.Redis:
        return sync_redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (
            f"cluster node {self.address} exited; see {self.dir}/redis.log"
        )
        try:
            with self.client() as c:
                return bool(c.ping())
        except sync_redis.ConnectionError:
            return False

    def role(self) -> str:
        with self.client() as c:
            return str(c.execute_command("ROLE")[0])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, "redis-server")


class RedisClusterServer:
    """`masters` masters (each with `replicas` replicas), slots spread evenly, all agreeing."""

    def __init__(
        self, directory: Path, masters: int = 3, replicas: int = 0, *, durable: bool = False
    ) -> None:
        self.masters, self.replicas = masters, replicas
        self.nodes = [
            ClusterNode(directory, durable=durable) for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.nodes[0].address}/0"

    @property
    def port(self) -> int:
        return self.nodes[0].port

    def start(self) -> RedisClusterServer:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(n.address for n in self.nodes),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            wait_for(self.healthy, "the cluster to agree")
        except BaseException:
            self.stop()
            raise
        return self

    def live_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def healthy(self) -> bool:
        """Every live node sees the cluster ok, every slot served, every replica in sync."""
        for node in self.live_nodes():
            with node.client() as c:
                info = c.cluster("info")
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                    return False
                if c.execute_command("ROLE")[0] == "slave":
                    replication = c.info("replication")
                    if replication.get("master_link_status") != "up":
                        return False
        return True

    def primaries(self) -> list[ClusterNode]:
        return [n for n in self.live_nodes() if n.role() == "master"]

    def flushall(self) -> None:
        for node in self.primaries():
            with node.client() as c:
                c.flushall()

    def dbsize(self) -> int:
        total = 0
        for node in self.primaries():
            with node.client() as c:
                total += int(c.dbsize())
        return total

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
