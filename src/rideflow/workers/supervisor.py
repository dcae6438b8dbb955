"""`rideflow up`: a managed redis-server (unless one is configured), the API, a dispatcher and a
job worker,
started together and stopped together."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import redis

from rideflow.config import Settings

log = logging.getLogger("rideflow.up")
STOP_TIMEOUT_S = 10.0


class ManagedRedis:
    """A redis-server of our own on loopback, with its data under `data_dir`: durable (AOF,
    fsync every second) for `rideflow up`, throwaway for tests."""

    def __init__(self, port: int, data_dir: Path, *, durable: bool = True) -> None:
        self.port, self.dir, self.durable = port, data_dir / "redis", durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> ManagedRedis:
        """Start it and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit(
                "redis-server not found; install it: sudo apt-get install redis-server"
            )
        if _port_in_use(self.port):
            raise SystemExit(
                f"port {self.port} is taken; stop what listens there or set "
                "RIDEFLOW_MANAGED_REDIS_PORT (or RIDEFLOW_REDIS_URL to use a Redis you run)"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"]
            if self.durable
            else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [
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
            ],
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        try:
            while not _answers(client):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not start; see {self.dir}/redis.log")
                time.sleep(0.05)
        finally:
            client.close()
        log.info("managed redis-server on port %d, data in %s", self.port, self.dir)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, "redis-server")


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", name, STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()


def up(settings: Settings, concurrency: int) -> int:
    """Run everything until Ctrl-C or SIGTERM, or until a part dies; leave nothing running."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    env = dict(os.environ)
    managed = None
    if not settings.redis_url:
        managed = ManagedRedis(settings.managed_redis_port, Path(settings.data_dir))
        managed.start()
        env["RIDEFLOW_REDIS_URL"] = managed.url
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, args in (
            ("api", ["api"]),
            ("dispatcher", ["dispatcher", "--concurrency", str(concurrency)]),
            ("jobs", ["jobs"]),
        ):
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "rideflow", *args], env=env, start_new_session=True
            )
        log.info(
            "RideFlow is up: http://%s:%d/docs (Ctrl-C stops everything)",
            settings.host,
            settings.port,
        )
        while not stop.wait(0.5):
            dead = [n for n, p in children.items() if p.poll() is not None]
            if dead:
                log.error("%s exited; stopping everything", ", ".join(dead))
                return 1
        return 0
    finally:
        for name, proc in children.items():
            _stop(proc, name)
        if managed is not None:
            managed.stop()
        log.info("stopped")
