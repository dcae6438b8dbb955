"""What every figure of `make bench` shares: the processes it starts (each stopped by its own pid),
their environment, credentials for them (access tokens signed with the secret they are given),
places in Bengaluru, the seeded fleet, RideFlow's services in this process, latency summaries and
the audit.

Only loopback is used, and never the machine's own Redis on port 6379.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis as sync_redis
from redis.asyncio import Redis, RedisCluster

from bench.loadgen import LoadResult, percentile
from rideflow.auth.principal import Role
from rideflow.auth.tokens import AccessTokens
from rideflow.config import Settings
from rideflow.dispatch.audit import audit
from rideflow.drivers.schemas import DriverCreate, DriverLocation
from rideflow.errors import RideflowError
from rideflow.orders.states import LIVE
from rideflow.redis import keys
from rideflow.redis.connections import is_cluster, open_redis
from rideflow.services import Services, build_services

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
LOGS = OUT / "logs"

HOST = "127.0.0.1"
SHARED_REDIS_PORT = 6379  # the machine's own Redis: never used
CITY = "blr"
CENTRE = (12.9716, 77.5946)
SEED = 20_251_123
JSON_HEADERS = {"Content-Type": "application/json"}
BENCH_JWT_SECRET = "rideflow-bench-only-jwt-secret-" + "b" * 33
"""The signing secret every RideFlow process of the benchmark is given (and tokens are minted
with): explicit, so no process falls back to a development secret file."""
BENCH_TOKEN_TTL_S = 6 * 3600
"""Tokens minted once serve a whole run, however long."""
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
WARMUP_S = 1.0
STALE_S = 300
HUGE_LIMIT = 1_000_000_000

# The fleet of figures 2, 3 and 5 to 7
DRIVERS = 50_000
SQUARE_KM = 30.0
SEED_PARALLEL = 64  # the size of the client's connection pool
POSITION_BATCH = 1000
DISPATCH_CONCURRENCY = 32


# ---------------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True, slots=True)
class Target:
    """One line of the results table."""

    key: str
    figure: str
    target: str


@dataclass(slots=True)
class Figure:
    """What one figure measured: a table cell per target (verdict None: for information)."""

    cells: dict[str, tuple[str, bool | None]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    """Latency samples in ms by what they measure, for the charts (not in results.json)."""


class SetupError(RuntimeError):
    """Something the benchmark needs could not be put in place: the whole run stops."""


def say(text: str) -> None:
    """Progress on stdout, at once."""
    print(text, flush=True)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """Count, nearest-rank percentiles and max of latencies in ms."""
    ordered = sorted(values_ms)
    out: dict[str, float] = {"n": len(ordered)}
    for name, pct in (("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0)):
        out[name] = round(percentile(ordered, pct), 3)
    out["max_ms"] = round(ordered[-1], 3) if ordered else 0.0
    return out


def failures(result: LoadResult, status: int) -> int:
    """Requests that did not get `status`: other statuses, errors, timeouts, unsent slots."""
    return result.sent - result.status_counts.get(status, 0) + result.dropped


def brief(result: LoadResult, status: int) -> str:
    """One line about a load run."""
    return (
        f"{result.throughput:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms,"
        f" {failures(result, status)} not {status}"
    )


# ---------------------------------------------------------------------------------------------
# Places in Bengaluru


def offset(north_km: float, east_km: float) -> tuple[float, float]:
    """The point this far north and east of the city centre, in degrees (6 decimals)."""
    lat = CENTRE[0] + north_km / 110.574
    lng = CENTRE[1] + east_km / (111.320 * math.cos(math.radians(CENTRE[0])))
    return round(lat, 6), round(lng, 6)


def point_in_disc(rng: random.Random, radius_km: float) -> tuple[float, float]:
    """A point uniformly distributed within `radius_km` of the centre."""
    r, angle = radius_km * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    return offset(r * math.cos(angle), r * math.sin(angle))


def point_in_square(rng: random.Random, side_km: float) -> tuple[float, float]:
    """A point uniformly distributed over a square centred on the centre."""
    half = side_km / 2
    return offset(rng.uniform(-half, half), rng.uniform(-half, half))


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = int(s.getsockname()[1])
    if port == SHARED_REDIS_PORT:
        raise SetupError("the kernel offered port 6379, which belongs to the machine's Redis")
    return port


@dataclass(slots=True)
class Server:
    """A process this run started, its port (0 when it listens on none) and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text("utf-8", errors="replace")

    def check_alive(self) -> None:
        """Raise SetupError, with the end of its log, if the process has exited."""
        if self.proc.poll() is not None:
            tail = "\n".join(self.output().splitlines()[-20:])
            raise SetupError(
                f"{self.name} (pid {self.pid}) exited with {self.proc.returncode}:\n{tail}"
            )


class Processes:
    """Every process this run started, each stopped by its own pid."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.live: dict[int, Server] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str], port: int = 0) -> Server:
        """Start a process in its own session (a Ctrl-C reaches us, and we stop it)."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(name, proc, port, log_path)
        self.live[proc.pid] = server
        return server

    def stop(self, server: Server) -> None:
        """SIGTERM to its pid, SIGKILL if it is still there after a grace period."""
        if self.live.pop(server.pid, None) is None:
            return
        if server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()

    def kill9(self, server: Server) -> None:
        """SIGKILL to its pid, at once: a crash, not a stop."""
        if self.live.pop(server.pid, None) is None:
            return
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait()

    def stop_all(self) -> None:
        """Stop whatever is still running, the last started first."""
        for server in reversed(list(self.live.values())):
            self.stop(server)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))


def process_cpu_s(pid: int) -> float:
    """CPU seconds a running process has used (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()  # fields from the 3rd on: utime, stime are 14, 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_s() -> tuple[float, float]:
    """CPU seconds all cores spent busy, and stolen by the hypervisor, since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


class CpuWatch:
    """How much of the machine's CPU went to processes this run did not start, since created:
    they compete with what is measured. Processes started and ended in between count through
    their parent's children times once reaped."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.start = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        times = os.times()
        ours = times.user + times.system + times.children_user + times.children_system
        ours += sum(process_cpu_s(pid) for pid in self.procs.live)
        return (time.monotonic(), *machine_cpu_s(), ours)

    def shares(self) -> dict[str, float]:
        """Percent of all cores used by the benchmark, by other processes, and stolen."""
        wall, busy, steal, ours = (b - a for a, b in zip(self.start, self._now(), strict=True))
        capacity = max(wall * CORES, 1e-9)
        return {
            "benchmark_pct": round(100 * ours / capacity, 1),
            "other_processes_pct": round(100 * max(0.0, busy - ours) / capacity, 1),
            "steal_pct": round(100 * steal / capacity, 1),
        }


def start_redis(procs: Processes, directory: Path, name: str = "redis") -> Server:
    """A throwaway redis-server: no persistence, loopback only, checked empty."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SetupError("redis-server is not installed (`make bench` installs it)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    server = procs.start(name, [*argv, "--dir", str(directory)], dict(os.environ), port)
    client = sync_redis.Redis(host=HOST, port=port)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            server.check_alive()
            try:
                client.ping()
                break
            except sync_redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SetupError(f"redis-server on port {port} did not answer") from None
                time.sleep(0.02)
        if client.dbsize() != 0:
            raise SetupError(f"redis on port {port} is not empty: it is not ours")
    finally:
        client.close()
    return server


def redis_url_of(server: Server) -> str:
    """The URL of a throwaway redis-server this run started."""
    return f"redis://{HOST}:{server.port}/0"


def rideflow_env(
    redis_url: str, *, rate_limit: bool = False, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a RideFlow process: rate limiting and `extra` (setting name ->
    value, e.g. {"ride_offer_window_s": "1"}) are what differ between processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEFLOW_")}
    policy = {"algorithm": "token_bucket", "limit": HUGE_LIMIT, "window_s": 1}
    env.update(
        RIDEFLOW_REDIS_URL=redis_url,
        RIDEFLOW_LOG_LEVEL="WARNING",
        RIDEFLOW_RATE_LIMIT_ENABLED="true" if rate_limit else "false",
        RIDEFLOW_RATE_POLICIES=json.dumps({"default": policy}),
        RIDEFLOW_RATE_ROUTES="[]",
        RIDEFLOW_DRIVER_STALE_S=str(STALE_S),
        RIDEFLOW_JWT_SECRET=BENCH_JWT_SECRET,
        # send_email logs instead of writing a file per message: the job figures measure the
        # queue, not a mail transport.
        RIDEFLOW_EMAIL_TRANSPORT="log",
        PYTHONUNBUFFERED="1",
    )
    env.update({f"RIDEFLOW_{name.upper()}": value for name, value in (extra or {}).items()})
    return env


async def wait_ready(server: Server, ready: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `ready` until it holds; SetupError when the process dies or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        server.check_alive()
        if await ready():
            return
        if time.monotonic() > deadline:
            raise SetupError(f"{server.name} (pid {server.pid}): timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_http(server: Server) -> None:
    """Wait until `GET /healthz` answers 200."""
    import httpx

    async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=1.0) as client:

        async def healthy() -> bool:
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_ready(server, healthy, "GET /healthz")


async def start_api(procs: Processes, name: str, env: dict[str, str]) -> Server:
    """`rideflow api` on a free port, ready."""
    port = free_port()
    argv = [sys.executable, "-m", "rideflow", "api", "--port", str(port)]
    server = procs.start(name, argv, {**env, "RIDEFLOW_PORT": str(port)}, port)
    await wait_http(server)
    return server


def local_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets a process holds open (from /proc)."""
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[9] in inodes:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


async def reading_stream(redis: Redis, pid: int) -> bool:
    """Whether a connection of process `pid` is reading the request stream (XREADGROUP): its
    dispatcher is up. Matched by the connection's local port, so that it tells one dispatcher
    from another (they all carry the same client name)."""
    ports = local_ports(pid)
    if not ports:
        return False
    for client in await stream_node_clients(redis):
        port = int(str(client["addr"]).rsplit(":", 1)[1])
        if port in ports and client["cmd"] == "xreadgroup":
            return True
    return False


async def stream_node_clients(redis: Redis) -> list[dict[str, Any]]:
    """CLIENT LIST of the Redis holding the city's request stream (on a cluster, its master)."""
    if is_cluster(redis):
        cluster = cast(RedisCluster, redis)
        node = cluster.get_node_from_key(keys.requests(CITY))
        return cast(list[dict[str, Any]], await cluster.client_list(target_nodes=node))
    return cast(list[dict[str, Any]], await redis.client_list())


async def start_dispatcher(
    procs: Processes,
    redis_url: str,
    redis: Redis,
    *,
    name: str = "dispatcher",
    concurrency: int = DISPATCH_CONCURRENCY,
    wait: bool = True,
    settings: dict[str, str] | None = None,
) -> Server:
    """`rideflow dispatcher`, ready (unless not `wait`) once one of its connections reads the
    request stream (at log level WARNING the start-up line is not printed)."""
    argv = [sys.executable, "-m", "rideflow", "dispatcher", "--concurrency", str(concurrency)]
    server = procs.start(name, argv, rideflow_env(redis_url, extra=settings))
    if wait:
        await wait_ready(
            server, lambda: reading_stream(redis, server.pid), "the dispatcher to read its stream"
        )
    return server


# ---------------------------------------------------------------------------------------------
# RideFlow's services in this process


def bench_settings(redis_url: str, **overrides: Any) -> Settings:
    """The settings the subprocesses get, with `overrides`."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "driver_stale_s": STALE_S,
        "rate_limit_enabled": False,
        "log_level": "WARNING",
        "jwt_secret": BENCH_JWT_SECRET,
    }
    return Settings(**(values | overrides))


# ---------------------------------------------------------------------------------------------
# Credentials


@functools.cache
def access_tokens() -> AccessTokens:
    """Issues tokens exactly as the processes under test verify them (same secret, issuer and
    audience: the settings they get)."""
    settings = bench_settings("redis://127.0.0.1:1/0")  # the URL is not used
    return AccessTokens(settings, BENCH_JWT_SECRET.encode())


def access_token(role: Role = Role.ADMIN, subject: str | None = None) -> str:
    """A signed access token for `subject` (default `bench-<role>`) as `role`."""
    who = subject or f"bench-{role.value.lower()}"
    return access_tokens().issue(who, role, ttl_s=BENCH_TOKEN_TTL_S).token


def auth_headers(role: Role = Role.ADMIN, subject: str | None = None) -> dict[str, str]:
    """`Authorization: Bearer` for `subject` as `role`."""
    return {"Authorization": f"Bearer {access_token(role, subject)}"}


def json_auth_headers(role: Role = Role.ADMIN, subject: str | None = None) -> dict[str, str]:
    """A JSON body's headers with credentials: what every figure's writes send."""
    return {**JSON_HEADERS, **auth_headers(role, subject)}


@asynccontextmanager
async def services(redis_url: str, **overrides: Any) -> AsyncIterator[Services]:
    """The services with the settings the subprocesses get (and `overrides`); the client is
    closed after."""
    settings = bench_settings(redis_url, **overrides)
    redis = await open_redis(settings, "bench")  # on a cluster, the slot map learnt first
    try:
        yield build_services(settings, redis)
    finally:
        await redis.aclose()


async def redis_now_us(redis: Redis) -> int:
    """The Redis clock, in epoch microseconds (the clock of every `at` stamp)."""
    seconds, micros = await redis.time()
    return int(seconds) * 1_000_000 + int(micros)


async def order_hashes(
    redis: Redis, fields: list[str], batch: int = 500
) -> AsyncIterator[tuple[str, list[str | None]]]:
    """(order id, values of `fields`) for every order of the city, in pipelined batches."""
    prefix = keys.order(CITY, "")
    pending: list[str] = []

    async def flush() -> list[tuple[str, list[str | None]]]:
        async with redis.pipeline(transaction=False) as pipe:
            for key in pending:
                pipe.hmget(key, fields)
            values = cast(list[list[str | None]], await pipe.execute())
        return [(k.removeprefix(prefix), v) for k, v in zip(pending, values, strict=True)]

    async for key in redis.scan_iter(match=prefix + "*", count=1000, _type="hash"):
        pending.append(str(key))
        if len(pending) >= batch:
            for item in await flush():
                yield item
            pending = []
    if pending:
        for item in await flush():
            yield item


async def cancel_live(svc: Services, parallel: int = 32) -> int:
    """Cancel every live order (as its customer would), which frees the drivers it holds and
    withdraws pending offers; returns how many were cancelled."""
    live: list[tuple[str, str]] = []
    async for order_id, (status, kind) in order_hashes(svc.redis, ["status", "kind"]):
        if status in LIVE and kind in ("ride", "delivery"):
            live.append((order_id, str(kind)))
    gate = asyncio.Semaphore(parallel)
    done = 0

    async def cancel(order_id: str, kind: str) -> None:
        nonlocal done
        async with gate:
            try:
                await svc.orders.step(order_id, "ride" if kind == "ride" else "delivery", "cancel")
                done += 1
            except RideflowError:
                pass  # it ended meanwhile

    await asyncio.gather(*(cancel(o, k) for o, k in live))
    return done


async def audit_city(redis: Redis) -> list[str]:
    """`rideflow audit` of the city, in this process: every breach found, as sentences."""
    return await audit(redis, [CITY])


# ---------------------------------------------------------------------------------------------
# The fleet

Fleet = list[tuple[str, float, float]]


def make_fleet(count: int = DRIVERS, side_km: float = SQUARE_KM, prefix: str = "bench-d") -> Fleet:
    """`count` drivers spread uniformly over a `side_km` square around the centre."""
    rng = random.Random(SEED + 1)
    return [(f"{prefix}{i:05d}", *point_in_square(rng, side_km)) for i in range(count)]


async def in_chunks(
    items: Fleet, call: Callable[[tuple[str, float, float]], Awaitable[Any]]
) -> None:
    """`call` every item, SEED_PARALLEL at a time."""
    for start in range(0, len(items), SEED_PARALLEL):
        await asyncio.gather(*(call(item) for item in items[start : start + SEED_PARALLEL]))


async def seed_drivers(svc: Services, fleet: Fleet) -> float:
    """Register, place and take online every driver the way the API would; returns seconds."""
    started = time.perf_counter()

    async def create(driver: tuple[str, float, float]) -> None:
        body = DriverCreate(id=driver[0], name=f"Driver {driver[0]}", rating=4.6, vehicle="KA01")
        await svc.drivers.create(body)

    async def go_online(driver: tuple[str, float, float]) -> None:
        await svc.drivers.set_status(driver[0], "online")

    await in_chunks(fleet, create)
    for start in range(0, len(fleet), POSITION_BATCH):
        batch = fleet[start : start + POSITION_BATCH]
        done = await svc.drivers.record(
            [DriverLocation(driver_id=d, lat=lat, lng=lng) for d, lat, lng in batch]
        )
        if done.rejected:
            raise SetupError(f"seeding positions refused: {done.rejected[0]}")
    await in_chunks(fleet, go_online)
    pooled = await svc.redis.zcard(keys.pool(CITY))
    if pooled != len(fleet):
        raise SetupError(f"{pooled} drivers in the pool after seeding, not {len(fleet)}")
    return time.perf_counter() - started
