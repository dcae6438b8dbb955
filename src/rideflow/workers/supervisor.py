"""`rideflow up`: a managed redis-server (unless one is configured), the API processes, the
dispatchers, the job workers and the recorders (by default one API, two dispatchers, one job
worker, one recorder), started together and stopped together; none outlives `rideflow up`, even
when it is killed with -9, and the death of any one stops them all.

Several of each are safe by construction: the API processes share the port (`api.listener`) and
hold no state of their own; dispatchers, job workers and recorders read their streams through
consumer groups, so every entry goes to one of them, and every dispatcher sweeps every city's
offer deadlines (a due offer is claimed before it is expired, so two never expire it twice);
only the first recorder samples drivers' positions into the record (a timer, not a stream:
several would write the same samples).
"""

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
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import redis

from rideflow.config import Settings
from rideflow.metrics import directory as metrics_dir
from rideflow.process import die_with_parent

log = logging.getLogger("rideflow.up")
STOP_TIMEOUT_S = 10.0
PORT_WAIT_S = 15.0
"""How long a start waits for the ports of a previous run's processes, still shutting down."""


@dataclass(frozen=True, slots=True)
class Shape:
    """How many of each process `rideflow up` runs. Two dispatchers by default, so that an offer
    still lapses on time while one is down: the other sweeps its deadlines (a sole dispatcher's
    crash made lapses ~0.4 s late; see figure 7 of `make bench`)."""

    api: int = 1
    dispatchers: int = 2
    jobs: int = 1
    recorders: int = 1

    @classmethod
    def of(cls, settings: Settings) -> Shape:
        return cls(
            settings.api_workers, settings.dispatchers, settings.job_workers, settings.recorders
        )

    def __str__(self) -> str:
        counts = [
            (self.api, "API process", "API processes"),
            (self.dispatchers, "dispatcher", "dispatchers"),
            (self.jobs, "job worker", "job workers"),
            (self.recorders, "recorder", "recorders"),
        ]
        return ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in counts)

    def parts(self, concurrency: int) -> list[tuple[str, list[str]]]:
        """(name, `rideflow` arguments) of every process, named `api-1`, `dispatcher-2`, ..."""
        out = [
            (f"api-{n}", ["api", "--reuse-port", "--name", f"api-{n}"])
            for n in range(1, self.api + 1)
        ]
        out += [(f"jobs-{n}", ["jobs"]) for n in range(1, self.jobs + 1)]
        out += [
            (f"recorder-{n}", ["recorder"] if n == 1 else ["recorder", "--no-sample"])
            for n in range(1, self.recorders + 1)
        ]
        out += [
            (f"dispatcher-{n}", ["dispatcher", "--concurrency", str(concurrency)])
            for n in range(1, self.dispatchers + 1)
        ]
        return out


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
        if not _port_frees(self.port):
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
            # Its own session: a Ctrl-C at the terminal reaches only the supervisor, which stops
            # the parts in order; the death signal still stops it if the supervisor is killed.
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 (one prctl call; nothing to lock)
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
            stop_process(self.proc, "redis-server")


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _port_frees(port: int) -> bool:
    """Whether `port` is free, waiting a while for processes of a crashed run to let it go."""
    deadline = time.monotonic() + PORT_WAIT_S
    while _port_in_use(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_process(proc: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", name, STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()


def _migrate_record(settings: Settings) -> None:
    """Migrate the record before the parts start (they would otherwise race to, one after the
    other); a database that is down is logged: the recorder migrates once it answers."""
    import asyncio

    from rideflow.record.db import Record

    if not settings.database_auto_migrate:
        return
    try:
        asyncio.run(Record(settings).migrate())
    except Exception as exc:
        log.error("the record's database could not be migrated: %s", exc)


def up(settings: Settings, concurrency: int, shape: Shape | None = None) -> int:
    """Run everything until Ctrl-C or SIGTERM, or until a part dies; leave nothing running."""
    shape = shape or Shape.of(settings)
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
    # One metrics directory for every part, emptied of the last run's: the API's /metrics sums it.
    metrics = Path(env.get(metrics_dir.ENV) or Path(settings.data_dir) / "metrics")
    env[metrics_dir.ENV] = str(metrics_dir.prepare(metrics))
    children: dict[str, subprocess.Popen[bytes]] = {}
    _migrate_record(settings)
    parts = shape.parts(concurrency)
    try:
        if not _port_frees(settings.port):
            log.error(
                "port %d is taken; stop what listens there or set RIDEFLOW_PORT", settings.port
            )
            return 1
        for name, args in parts:
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "rideflow", *args],
                env=env,
                start_new_session=True,
                # SIGKILL, not a graceful stop: the supervisor's death is a crash, the parts are
                # built to survive kill -9 (their work is reclaimed), and a stop that hangs (a
                # dispatcher whose Redis vanished at the same moment was seen to) would keep the
                # ports a restart needs. Redis alone gets SIGTERM, to flush its append-only file.
                preexec_fn=die_with_parent(signal.SIGKILL),  # noqa: PLW1509 (main thread)
            )
        log.info(
            "RideFlow is up: http://%s:%d/docs (%s; Ctrl-C stops everything)",
            settings.host,
            settings.port,
            shape,
        )
        while not stop.wait(0.5):
            dead = [n for n, p in children.items() if p.poll() is not None]
            if dead:
                log.error("%s exited; stopping everything", ", ".join(dead))
                return 1
        return 0
    finally:
        for name, proc in children.items():
            stop_process(proc, name)
        if managed is not None:
            managed.stop()
        log.info("stopped")
