"""A throwaway redis-server with its append-only file on, that can be killed with SIGKILL and
started again on the same port from the same directory: the fault the suite
(`tests/faults/test_redis_kill.py`) and figure 20 of `make bench` inflict.

`appendfsync` is the policy under test: `everysec` (what `rideflow up` runs), `always`, or
`off` (no AOF at all: a restart comes back empty, the control that shows a loss is seen).
Never the machine's Redis: a free port of its own, checked empty when first started.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Literal

import redis as sync_redis

from rideflow.process import die_with_parent
from rideflow.workers.supervisor import stop_process

Fsync = Literal["everysec", "always", "off"]
START_TIMEOUT_S = 30.0
"""Loading a large AOF on a busy machine takes a while."""


class AofRedis:
    """One redis-server on `port` with its data in `directory`, started, killed and restarted."""

    def __init__(self, port: int, directory: Path, fsync: Fsync = "everysec") -> None:
        self.port, self.dir, self.fsync = port, directory, fsync
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (sudo apt-get install redis-server)")
        persistence = (
            ["--appendonly", "no"]
            if self.fsync == "off"
            else ["--appendonly", "yes", "--appendfsync", self.fsync]
        )
        return [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--logfile",
            "redis.log",
            *persistence,
        ]

    def start(self) -> float:
        """Start it (again: same port, same directory) and wait until it answers PING, having
        loaded its AOF; returns the `time.monotonic()` at which it first answered."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 (one prctl call; nothing to lock)
        )
        client = sync_redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited; see {self.dir / 'redis.log'}")
                try:
                    client.ping()  # answers only once the AOF is loaded (LOADING before)
                    answered = time.monotonic()
                    break
                except (sync_redis.ConnectionError, sync_redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server on port {self.port} did not answer"
                        ) from None
                    time.sleep(0.01)
            if self.starts == 0 and client.dbsize() != 0:
                raise RuntimeError(f"redis on port {self.port} is not empty: it is not ours")
        finally:
            client.close()
        self.starts += 1
        return answered

    def kill9(self) -> None:
        """SIGKILL: a crash, no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (it flushes its AOF), SIGKILL if it lingers."""
        if self.proc is not None:
            stop_process(self.proc, "redis-server")
