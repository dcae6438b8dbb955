"""`make bench`: measure the targets of the current issue on loopback and write the report.

Writes bench/RESULTS.md (the table and the method) and bench/out/results.json (the raw numbers).
Every server is started here on a free port against a throwaway redis-server, and each is stopped
by its own pid when the run ends, also on Ctrl-C. Run as `python -m bench.run` from the project
root; `--only FIGURE` (repeatable) measures some figures and leaves RESULTS.md alone.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import redis as sync_redis
import uvloop
from redis.asyncio import Redis
from rideflow.rides import Rides

from bench.loadgen import LoadResult, MakeRequest, RequestSpec, percentile, run_load
from rideflow import keys
from rideflow.cities import CityMap
from rideflow.config import Algorithm, RatePolicy, Settings
from rideflow.connections import create_redis
from rideflow.drivers import Drivers
from rideflow.multiplex import MultiplexedRedis
from rideflow.ratelimit import RateLimiter
from rideflow.schemas import DriverCreate, DriverLocation, Point, RideCreate
from rideflow.scripts import Scripts

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
LOGS = OUT / "logs"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
RESULTS_JSON = OUT / "results.json"
RIDES_CSV = OUT / "dispatch_rides.csv"
COMMAND = "make bench"

HOST = "127.0.0.1"
SHARED_REDIS_PORT = 6379  # the machine's own Redis: never used
CITY = "blr"
CENTRE = (12.9716, 77.5946)
SEED = 20_251_123
JSON_HEADERS = {"Content-Type": "application/json"}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
WARMUP_S = 1.0
STALE_S = 300
HUGE_LIMIT = 1_000_000_000

# 1. POST /v1/rides
RIDE_ROUNDS = 3
RIDE_CONNECTIONS = 32
RIDE_DURATION_S = 5.0
RIDE_BODIES = 8192
RIDE_RADIUS_KM = 9.5
OPEN_RATE = 1500.0
OPEN_CONNECTIONS = 32
OPEN_DURATION_S = 10.0
MAX_REQUESTS = 500_000

# 2. dequeue -> ASSIGNED
DRIVERS = 50_000
SQUARE_KM = 30.0
SEED_PARALLEL = 64  # the size of the client's connection pool
POSITION_BATCH = 1000
DISPATCH_RATE = 500.0
DISPATCH_RIDES = 5000
DISPATCH_CONCURRENCY = 32
ASSIGN_WAIT_S = 30.0

# 3. positions
BATCH_SIZE = 500
BATCH_BODIES = 100
JITTER_DEG = 0.0005
POSITION_CONNECTIONS = 6
POSITION_DURATION_S = 6.0

# 4. rate-limit check
LIMIT_ROUNDS = 3
LIMIT_DURATION_S = 4.0
LIMIT_MAX_REQUESTS = 40_000
LIMIT_PATH = "/v1/rides/blr-doesnotexist"
LIMIT_CALLS = 5000
LIMIT_WARM_CALLS = 200
ALGORITHMS: tuple[Algorithm, ...] = ("fixed_window", "sliding_window", "token_bucket")


# ---------------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True, slots=True)
class Target:
    """One line of the results table."""

    key: str
    figure: str
    target: str


TARGETS: dict[str, tuple[Target, ...]] = {
    "rides": (
        Target("rides_rate", "1. `POST /v1/rides`, one API process, saturation", ">= 3,000 req/s"),
        Target("rides_ratio", "1. the same, relative to bare FastAPI + `XADD`", ">= 85 %"),
        Target("rides_p99", "1. `POST /v1/rides` at 1,500 req/s offered", "p99 <= 10 ms"),
    ),
    "dispatch": (
        Target("dispatch_p50", "2. dequeue -> ASSIGNED (50k drivers, 500/s)", "p50 <= 5 ms"),
        Target("dispatch_p99", "2. dequeue -> ASSIGNED (50k drivers, 500/s)", "p99 <= 25 ms"),
        Target("dispatch_all", "2. rides ASSIGNED / drivers with two rides", "5,000 / 0"),
        Target("dispatch_queued", "2. queued -> ASSIGNED (information)", "-"),
    ),
    "positions": (
        Target("positions_rate", "3. positions, `POST /v1/drivers/locations`", ">= 25,000 /s"),
    ),
    "ratelimit": (
        Target("ratelimit_added", "4. rate-limit check added, end to end", "median <= 0.25 ms"),
        Target("ratelimit_call", "4. one `RateLimiter.hit` (information)", "-"),
    ),
}


@dataclass(slots=True)
class Figure:
    """What one figure measured: a table cell per target (verdict None: for information)."""

    cells: dict[str, tuple[str, bool | None]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


class SetupError(RuntimeError):
    """Something the benchmark needs could not be put in place: the whole run stops."""


def say(text: str) -> None:
    """Progress on stdout, at once."""
    print(text, flush=True)


async def measure(name: str, run: Awaitable[Figure], procs: Processes) -> Figure:
    """Run one figure; a failure becomes NOT met with its reason, a setup failure stops all."""
    say(f"== figure {name}")
    started = time.perf_counter()
    cpu = CpuWatch(procs)
    try:
        figure = await run
    except SetupError:
        raise
    except Exception as exc:
        traceback.print_exc()
        figure = Figure(raw={"error": f"{type(exc).__name__}: {exc}"})
    reason = figure.raw.get("error", "not measured")
    for target in TARGETS[name]:
        figure.cells.setdefault(target.key, (f"failed: {reason}", False))
    figure.raw["elapsed_s"] = round(time.perf_counter() - started, 1)
    figure.raw["cpu"] = cpu.shares()
    say(f"  cpu: {figure.raw['cpu']}")
    return figure


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
    they compete with what is measured."""

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


def start_redis(procs: Processes, directory: Path) -> Server:
    """A throwaway redis-server: no persistence, loopback only, checked empty."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SetupError("redis-server is not installed (`make bench` installs it)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    server = procs.start("redis", [*argv, "--dir", str(directory)], dict(os.environ), port)
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


def rideflow_env(redis_url: str, *, rate_limit: bool = False) -> dict[str, str]:
    """The environment of a RideFlow process; only rate limiting differs between processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEFLOW_")}
    policy = {"algorithm": "token_bucket", "limit": HUGE_LIMIT, "window_s": 1}
    env.update(
        RIDEFLOW_REDIS_URL=redis_url,
        RIDEFLOW_LOG_LEVEL="WARNING",
        RIDEFLOW_RATE_LIMIT_ENABLED="true" if rate_limit else "false",
        RIDEFLOW_RATE_POLICIES=json.dumps({"default": policy}),
        RIDEFLOW_RATE_ROUTES="[]",
        RIDEFLOW_DRIVER_STALE_S=str(STALE_S),
        PYTHONUNBUFFERED="1",
    )
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


async def start_baseline(procs: Processes, redis_url: str) -> Server:
    """The bare FastAPI + XADD app, served the way `rideflow api` serves (uvloop, httptools)."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", HOST]
    argv += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    argv += ["--no-access-log", "--log-level", "warning"]
    server = procs.start("baseline", argv, rideflow_env(redis_url), port)
    await wait_http(server)
    return server


async def start_dispatcher(procs: Processes, redis_url: str, redis: Redis) -> Server:
    """`rideflow dispatcher`, ready once it logs its workers or blocks reading its stream (at
    log level WARNING the start-up line is not printed, and Redis 7.0 only lists a consumer in
    the group once it has read an entry, so the blocked client is what shows)."""
    argv = [sys.executable, "-m", "rideflow", "dispatcher"]
    argv += ["--concurrency", str(DISPATCH_CONCURRENCY)]
    server = procs.start("dispatcher", argv, rideflow_env(redis_url))

    async def reading() -> bool:
        if "workers" in server.output():
            return True
        clients = await redis.client_list()
        return any(c["name"] == "rideflow-dispatcher" and c["cmd"] == "xreadgroup" for c in clients)

    await wait_ready(server, reading, "the dispatcher to read its stream")
    return server


# ---------------------------------------------------------------------------------------------
# Load results


def failures(result: LoadResult, status: int) -> int:
    """Requests that did not get `status`: other statuses, errors, timeouts, unsent slots."""
    return result.sent - result.status_counts.get(status, 0) + result.dropped


def brief(result: LoadResult, status: int) -> str:
    """One line about a load run."""
    return (
        f"{result.throughput:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms,"
        f" {failures(result, status)} not {status}"
    )


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """Count, nearest-rank percentiles and max of latencies in ms."""
    ordered = sorted(values_ms)
    out: dict[str, float] = {"n": len(ordered)}
    for name, pct in (("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0)):
        out[name] = round(percentile(ordered, pct), 3)
    out["max_ms"] = round(ordered[-1], 3) if ordered else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# 1. POST /v1/rides


def ride_requests() -> MakeRequest:
    """Ride requests, each body with its own rider and pickup, cycling over RIDE_BODIES."""
    rng = random.Random(SEED)
    specs: list[RequestSpec] = []
    for i in range(RIDE_BODIES):
        pickup, dropoff = point_in_disc(rng, RIDE_RADIUS_KM), point_in_disc(rng, RIDE_RADIUS_KM)
        body = {
            "rider_id": f"rider-{i}",
            "pickup": {"lat": pickup[0], "lng": pickup[1]},
            "dropoff": {"lat": dropoff[0], "lng": dropoff[1]},
        }
        specs.append(("POST", "/v1/rides", orjson.dumps(body), JSON_HEADERS))

    def make(i: int) -> RequestSpec:
        return specs[i % RIDE_BODIES]

    return make


async def saturate(server: Server, make: MakeRequest) -> LoadResult:
    """Closed loop: RIDE_CONNECTIONS connections, each sending as soon as it has an answer."""
    result = await run_load(
        HOST,
        server.port,
        make,
        mode="closed",
        connections=RIDE_CONNECTIONS,
        duration_s=RIDE_DURATION_S,
        warmup_s=WARMUP_S,
        max_requests=MAX_REQUESTS,
    )
    say(f"  {server.name}: {brief(result, 202)}")
    return result


async def figure_rides(procs: Processes, redis_url: str) -> Figure:
    """Saturation against RideFlow and the baseline in turn, then latency at a fixed rate."""
    make = ride_requests()
    api = await start_api(procs, "api-rides", rideflow_env(redis_url))
    baseline = await start_baseline(procs, redis_url)
    ours: list[LoadResult] = []
    theirs: list[LoadResult] = []
    try:
        for _ in range(RIDE_ROUNDS):
            ours.append(await saturate(api, make))
            theirs.append(await saturate(baseline, make))
        procs.stop(baseline)
        steady = await run_load(
            HOST,
            api.port,
            make,
            mode="open",
            rate=OPEN_RATE,
            connections=OPEN_CONNECTIONS,
            duration_s=OPEN_DURATION_S,
            warmup_s=WARMUP_S,
            max_requests=int(OPEN_RATE * (OPEN_DURATION_S + WARMUP_S)) + 1,
        )
        say(f"  {api.name} at {OPEN_RATE:,.0f} req/s offered: {brief(steady, 202)}")
    finally:
        procs.stop(baseline)
        procs.stop(api)
    return rides_figure(ours, theirs, steady)


def rides_figure(ours: list[LoadResult], theirs: list[LoadResult], steady: LoadResult) -> Figure:
    """Medians over rounds, the ratio to the baseline, and the fixed-rate percentiles."""
    ours_rate = statistics.median(r.throughput for r in ours)
    theirs_rate = statistics.median(r.throughput for r in theirs)
    ratio = ours_rate / theirs_rate if theirs_rate else 0.0
    bad_ours = sum(failures(r, 202) for r in ours)
    bad_theirs = sum(failures(r, 202) for r in theirs)
    bad_steady = failures(steady, 202)
    rounds = ", ".join(f"{r.throughput:,.0f}" for r in ours)
    base_rounds = ", ".join(f"{r.throughput:,.0f}" for r in theirs)
    figure = Figure(
        raw={
            "rideflow_rounds": [r.as_dict() for r in ours],
            "baseline_rounds": [r.as_dict() for r in theirs],
            "fixed_rate": steady.as_dict(),
            "rideflow_median_rps": round(ours_rate, 1),
            "baseline_median_rps": round(theirs_rate, 1),
            "ratio": round(ratio, 4),
        }
    )
    figure.cells["rides_rate"] = (
        f"{ours_rate:,.0f} req/s (median of {rounds}); {bad_ours} not 202",
        ours_rate >= 3000 and bad_ours == 0,
    )
    figure.cells["rides_ratio"] = (
        f"{100 * ratio:.1f} % (baseline {theirs_rate:,.0f} req/s, median of {base_rounds};"
        f" {bad_theirs} not 202)",
        ratio >= 0.85 and bad_ours == 0,
    )
    figure.cells["rides_p99"] = (
        f"p99 {steady.p99_ms:.2f} ms (p50 {steady.p50_ms:.2f}, p99.9 {steady.p999_ms:.2f},"
        f" max {steady.max_ms:.1f} ms; {steady.throughput:,.0f} req/s done; {bad_steady} not 202)",
        steady.p99_ms <= 10 and bad_steady == 0,
    )
    return figure


# ---------------------------------------------------------------------------------------------
# 2. dequeue -> ASSIGNED

Fleet = list[tuple[str, float, float]]


@dataclass(slots=True)
class Services:
    """RideFlow's own services, in this process, on the throwaway Redis."""

    redis: Redis
    drivers: Drivers
    rides: Rides


@asynccontextmanager
async def services(redis_url: str) -> AsyncIterator[Services]:
    """The services with the settings the subprocesses get; the client is closed after."""
    settings = Settings(
        redis_url=redis_url, driver_stale_s=STALE_S, rate_limit_enabled=False, log_level="WARNING"
    )
    redis = create_redis(settings, "bench")
    scripts = Scripts.register(redis)
    cities = CityMap(settings.cities)
    try:
        yield Services(
            redis,
            Drivers(redis, scripts, settings, cities),
            Rides(redis, scripts, settings, cities),
        )
    finally:
        await redis.aclose()


def make_fleet() -> Fleet:
    """DRIVERS drivers spread uniformly over a SQUARE_KM square around the centre."""
    rng = random.Random(SEED + 1)
    return [(f"bench-d{i:05d}", *point_in_square(rng, SQUARE_KM)) for i in range(DRIVERS)]


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


async def paced_rides(rides: Rides) -> tuple[list[str], dict[str, float]]:
    """Create DISPATCH_RIDES rides open loop at DISPATCH_RATE/s on a fixed schedule."""
    rng = random.Random(SEED + 2)
    bodies = []
    for i in range(DISPATCH_RIDES):
        (plat, plng), (dlat, dlng) = point_in_square(rng, SQUARE_KM), point_in_disc(rng, 10)
        pickup, dropoff = Point(lat=plat, lng=plng), Point(lat=dlat, lng=dlng)
        bodies.append(RideCreate(rider_id=f"rider-{i}", pickup=pickup, dropoff=dropoff))
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []
    worst_lag = 0.0
    for i, body in enumerate(bodies):
        delay = start + i / DISPATCH_RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            worst_lag = max(worst_lag, -delay)
        tasks.append(asyncio.create_task(rides.create(body)))
    created = await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    pacing = {
        "rides": len(created),
        "elapsed_s": round(elapsed, 3),
        "achieved_per_s": round(len(created) / elapsed, 1),
        "worst_schedule_lag_ms": round(worst_lag * 1000, 2),
    }
    return [ride_id for ride_id, _city in created], pacing


async def ride_fields(redis: Redis, ride_ids: list[str], names: list[str]) -> list[list[Any]]:
    """HMGET of `names` on every ride, in one pipeline."""
    pipe = redis.pipeline(transaction=False)
    for ride_id in ride_ids:
        pipe.hmget(keys.ride(CITY, ride_id), names)
    return cast(list[list[Any]], await pipe.execute())


async def wait_settled(redis: Redis, ride_ids: list[str]) -> Counter[str]:
    """Poll until every ride is ASSIGNED or no longer in flight, at most ASSIGN_WAIT_S."""
    deadline = time.monotonic() + ASSIGN_WAIT_S
    while True:
        statuses = Counter(str(s) for (s,) in await ride_fields(redis, ride_ids, ["status"]))
        in_flight = statuses["QUEUED"] + statuses["SEARCHING"]
        if in_flight == 0 or time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(0.2)


async def double_assignments(redis: Redis, assigned: list[tuple[str, str]]) -> dict[str, int]:
    """Drivers named by two ASSIGNED rides, and drivers whose hash names another ride."""
    drivers = [driver for _ride, driver in assigned]
    pipe = redis.pipeline(transaction=False)
    for _ride, driver in assigned:
        pipe.hget(keys.driver(CITY, driver), "ride")
    held = await pipe.execute()
    mismatched = sum(h != ride for (ride, _d), h in zip(assigned, held, strict=True))
    return {"repeated_drivers": len(drivers) - len(set(drivers)), "mismatched_holders": mismatched}


async def figure_dispatch(procs: Processes, svc: Services, redis_url: str) -> Figure:
    """One dispatcher, rides created at a fixed rate, latencies from the rides' own stamps."""
    dispatcher = await start_dispatcher(procs, redis_url, svc.redis)
    try:
        ride_ids, pacing = await paced_rides(svc.rides)
        say(f"  created {pacing['rides']:,} rides at {pacing['achieved_per_s']:,.0f}/s")
        statuses = await wait_settled(svc.redis, ride_ids)
    finally:
        procs.stop(dispatcher)
    warnings = sum(" WARNING " in line for line in dispatcher.output().splitlines())
    names = ["status", "driver", "t_QUEUED", "t_SEARCHING", "t_ASSIGNED"]
    rows = await ride_fields(svc.redis, ride_ids, names)
    write_rides_csv(ride_ids, names, rows)
    done = [(rid, row) for rid, row in zip(ride_ids, rows, strict=True) if row[0] == "ASSIGNED"]
    checks = await double_assignments(svc.redis, [(rid, row[1]) for rid, row in done])
    dequeue = latency_summary([(int(r[4]) - int(r[3])) / 1000 for _rid, r in done])
    queued = latency_summary([(int(r[4]) - int(r[2])) / 1000 for _rid, r in done])
    say(f"  dequeue -> ASSIGNED {dequeue}; queued -> ASSIGNED {queued}")
    raw = {
        "pacing": pacing,
        "statuses": dict(statuses),
        "dequeue_to_assigned": dequeue,
        "queued_to_assigned": queued,
        "dispatcher_log_warnings": warnings,
        **checks,
    }
    return dispatch_figure(raw, len(done))


def write_rides_csv(ride_ids: list[str], names: list[str], rows: list[list[Any]]) -> None:
    """Every ride's status, driver and stamps, for a closer look at slow ones."""
    with RIDES_CSV.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["ride_id", *names])
        writer.writerows([ride_id, *row] for ride_id, row in zip(ride_ids, rows, strict=True))


def dispatch_figure(raw: dict[str, Any], assigned: int) -> Figure:
    """Cells of figure 2: the targets hold only if every ride was assigned exactly once."""
    dequeue, queued = raw["dequeue_to_assigned"], raw["queued_to_assigned"]
    doubles = raw["repeated_drivers"] + raw["mismatched_holders"]
    complete = assigned == DISPATCH_RIDES
    caveat = "" if complete else f" (only {assigned:,} of {DISPATCH_RIDES:,} assigned)"
    figure = Figure(raw=raw)
    figure.cells["dispatch_p50"] = (
        f"{dequeue['p50_ms']:.2f} ms{caveat}",
        complete and dequeue["p50_ms"] <= 5,
    )
    figure.cells["dispatch_p99"] = (
        f"{dequeue['p99_ms']:.2f} ms (p90 {dequeue['p90_ms']:.2f}, max {dequeue['max_ms']:.1f})"
        f"{caveat}",
        complete and dequeue["p99_ms"] <= 25,
    )
    others = {s: n for s, n in raw["statuses"].items() if s != "ASSIGNED"}
    warned = raw["dispatcher_log_warnings"]
    figure.cells["dispatch_all"] = (
        f"{assigned:,} of {DISPATCH_RIDES:,}{f' (others: {others})' if others else ''} / {doubles}"
        f"{f'; the dispatcher logged {warned} warnings' if warned else ''}",
        complete and doubles == 0,
    )
    figure.cells["dispatch_queued"] = (
        f"p50 {queued['p50_ms']:.2f} ms, p90 {queued['p90_ms']:.2f}, p99 {queued['p99_ms']:.2f},"
        f" max {queued['max_ms']:.1f}",
        None,
    )
    return figure


# ---------------------------------------------------------------------------------------------
# 3. positions


def position_bodies(fleet: Fleet) -> list[bytes]:
    """BATCH_BODIES bodies of BATCH_SIZE positions, each driver a few metres from its seed."""
    rng = random.Random(SEED + 3)
    bodies = []
    for b in range(BATCH_BODIES):
        chunk = [fleet[(b * BATCH_SIZE + j) % len(fleet)] for j in range(BATCH_SIZE)]
        positions = [
            {
                "driver_id": driver,
                "lat": round(lat + rng.uniform(-JITTER_DEG, JITTER_DEG), 6),
                "lng": round(lng + rng.uniform(-JITTER_DEG, JITTER_DEG), 6),
            }
            for driver, lat, lng in chunk
        ]
        bodies.append(orjson.dumps({"positions": positions}))
    return bodies


async def check_batch(server: Server, body: bytes) -> None:
    """One batch through httpx: every position accepted, none rejected."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=10) as client:
        reply = await client.post("/v1/drivers/locations", content=body, headers=JSON_HEADERS)
    answer = reply.json() if reply.status_code == 200 else {}
    if answer.get("accepted") != BATCH_SIZE or answer.get("rejected") != []:
        raise RuntimeError(
            f"a batch of {BATCH_SIZE} was not wholly accepted: {reply.status_code} "
            f"{reply.text[:300]}"
        )


async def figure_positions(procs: Processes, redis_url: str, fleet: Fleet) -> Figure:
    """Closed loop of 500-position batches; positions/s counts only 200 answers."""
    bodies = position_bodies(fleet)
    api = await start_api(procs, "api-positions", rideflow_env(redis_url))

    def make(i: int) -> RequestSpec:
        return ("POST", "/v1/drivers/locations", bodies[i % BATCH_BODIES], JSON_HEADERS)

    try:
        await check_batch(api, bodies[0])
        result = await run_load(
            HOST,
            api.port,
            make,
            mode="closed",
            connections=POSITION_CONNECTIONS,
            duration_s=POSITION_DURATION_S,
            warmup_s=WARMUP_S,
            max_requests=MAX_REQUESTS,
        )
        await check_batch(api, bodies[-1])
    finally:
        procs.stop(api)
    say(f"  {api.name}: {brief(result, 200)}")
    rate = result.status_counts.get(200, 0) / result.elapsed_s * BATCH_SIZE
    bad = failures(result, 200)
    figure = Figure(raw={"load": result.as_dict(), "positions_per_s": round(rate, 1)})
    figure.cells["positions_rate"] = (
        f"{rate:,.0f} positions/s ({rate / BATCH_SIZE:,.1f} batches/s of {BATCH_SIZE},"
        f" p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms; {bad} not 200)",
        rate >= 25_000 and bad == 0,
    )
    return figure


# ---------------------------------------------------------------------------------------------
# 4. rate-limit check


async def check_limiting(server: Server, *, limited: bool) -> None:
    """The 404 path answers 404, with RateLimit headers exactly when limits are on."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=5) as client:
        reply = await client.get(LIMIT_PATH)
    if reply.status_code != 404 or ("ratelimit" in reply.headers) != limited:
        raise RuntimeError(
            f"{server.name}: GET {LIMIT_PATH} gave {reply.status_code} with headers "
            f"{dict(reply.headers)}; expected 404 {'with' if limited else 'without'} RateLimit"
        )


async def sequential_404(server: Server) -> LoadResult:
    """One request at a time against the 404 path, so each latency is the request's own
    (an open-loop schedule would add the generator's millisecond timer granularity)."""

    def make(_i: int) -> RequestSpec:
        return ("GET", LIMIT_PATH, b"", {})

    result = await run_load(
        HOST,
        server.port,
        make,
        mode="closed",
        connections=1,
        duration_s=LIMIT_DURATION_S,
        warmup_s=WARMUP_S,
        max_requests=LIMIT_MAX_REQUESTS,
    )
    say(f"  {server.name}: {brief(result, 404)}")
    return result


async def limits_end_to_end(procs: Processes, redis_url: str) -> dict[str, Any]:
    """Two API processes, limits on and off, measured in turn, one request at a time."""
    on = await start_api(procs, "api-limits-on", rideflow_env(redis_url, rate_limit=True))
    off = await start_api(procs, "api-limits-off", rideflow_env(redis_url, rate_limit=False))
    runs: dict[str, list[LoadResult]] = {"on": [], "off": []}
    try:
        await check_limiting(on, limited=True)
        await check_limiting(off, limited=False)
        for _ in range(LIMIT_ROUNDS):
            runs["on"].append(await sequential_404(on))
            runs["off"].append(await sequential_404(off))
    finally:
        procs.stop(on)
        procs.stop(off)
    p50 = {side: statistics.median(r.p50_ms for r in rs) for side, rs in runs.items()}
    return {
        "p50_on_ms": round(p50["on"], 4),
        "p50_off_ms": round(p50["off"], 4),
        "added_ms": round(p50["on"] - p50["off"], 4),
        "round_differences_ms": [
            round(a.p50_ms - b.p50_ms, 4) for a, b in zip(runs["on"], runs["off"], strict=True)
        ],
        "too_many_requests": sum(r.status_counts.get(429, 0) for r in runs["on"]),
        "not_404": sum(failures(r, 404) for rs in runs.values() for r in rs),
        "runs": {side: [r.as_dict() for r in rs] for side, rs in runs.items()},
    }


async def limits_in_process(redis_url: str) -> dict[str, dict[str, float]]:
    """Sequential `RateLimiter.hit` calls per algorithm, each timed on its own."""
    policies = {a: RatePolicy(algorithm=a, limit=HUGE_LIMIT, window_s=60) for a in ALGORITHMS}
    settings = Settings(
        redis_url=redis_url, rate_policies=policies, rate_routes=[], rate_default_policy=None
    )
    redis = MultiplexedRedis(redis_url, "bench-limits")  # as the API's limiter connects
    limiter = RateLimiter(Scripts.register(redis), settings)
    out: dict[str, dict[str, float]] = {}
    try:
        for algorithm in ALGORITHMS:
            client = f"bench-{algorithm}"
            for _ in range(LIMIT_WARM_CALLS):
                await limiter.hit(algorithm, client)
            times_ms, refused = [], 0
            for _ in range(LIMIT_CALLS):
                t0 = time.perf_counter_ns()
                decision = await limiter.hit(algorithm, client)
                times_ms.append((time.perf_counter_ns() - t0) / 1e6)
                refused += not decision.allowed
            if refused:
                raise RuntimeError(f"{algorithm}: {refused} of {LIMIT_CALLS} hits refused")
            out[algorithm] = latency_summary(times_ms)
    finally:
        await redis.aclose()
    return out


async def figure_ratelimit(procs: Processes, redis_url: str) -> Figure:
    """End to end (the verdict) and in process (for information)."""
    e2e = await limits_end_to_end(procs, redis_url)
    say(f"  added p50 {e2e['added_ms']:.3f} ms (rounds {e2e['round_differences_ms']})")
    calls = await limits_in_process(redis_url)
    say(f"  in process: {calls}")
    figure = Figure(raw={"end_to_end": e2e, "in_process": calls})
    clean = e2e["too_many_requests"] == 0 and e2e["not_404"] == 0
    figure.cells["ratelimit_added"] = (
        f"{e2e['added_ms']:+.3f} ms (p50 {e2e['p50_on_ms']:.3f} ms on vs"
        f" {e2e['p50_off_ms']:.3f} ms off; {e2e['too_many_requests']} of them 429,"
        f" {e2e['not_404']} not 404)",
        e2e["added_ms"] <= 0.25 and clean,
    )
    figure.cells["ratelimit_call"] = (
        "; ".join(
            f"{a}: median {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms" for a, s in calls.items()
        ),
        None,
    )
    return figure


# ---------------------------------------------------------------------------------------------
# The run


async def flush(redis_url: str) -> None:
    """Empty the throwaway Redis (figure 1 leaves queued rides a dispatcher would pick up)."""
    client = Redis.from_url(redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def run_figures(procs: Processes, redis: Server, only: set[str]) -> dict[str, Figure]:
    """Measure the selected figures in order; drivers are seeded once for figures 2 and 3."""
    url = f"redis://{HOST}:{redis.port}/0"
    figures: dict[str, Figure] = {}
    if "rides" in only:
        figures["rides"] = await measure("rides", figure_rides(procs, url), procs)
    if only & {"dispatch", "positions"}:
        await flush(url)
        fleet = make_fleet()
        async with services(url) as svc:
            say(f"== seeding {len(fleet):,} online drivers")
            seconds = await seed_drivers(svc, fleet)
            say(f"  seeded in {seconds:.1f} s")
            if "dispatch" in only:
                figures["dispatch"] = await measure(
                    "dispatch", figure_dispatch(procs, svc, url), procs
                )
                figures["dispatch"].raw["seed_s"] = round(seconds, 1)
        if "positions" in only:
            figures["positions"] = await measure(
                "positions", figure_positions(procs, url, fleet), procs
            )
    if "ratelimit" in only:
        figures["ratelimit"] = await measure("ratelimit", figure_ratelimit(procs, url), procs)
    return figures


def measure_all(only: set[str]) -> tuple[dict[str, Figure], dict[str, float]]:
    """Start the throwaway Redis, run the figures, and stop every process we started; also
    returns the CPU shares of the whole run."""
    procs = Processes(LOGS)
    cpu = CpuWatch(procs)
    with (
        tempfile.TemporaryDirectory(prefix="rideflow-bench-") as tmp,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        try:
            redis = start_redis(procs, Path(tmp))
            return runner.run(run_figures(procs, redis, only)), cpu.shares()
        finally:
            procs.stop_all()  # before the Redis directory goes


def interrupt(signum: int, _frame: object) -> None:
    """SIGTERM ends the run the way Ctrl-C does, so that every process gets stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------------------------
# The report


def command_output(argv: list[str]) -> str:
    """A command's stdout, stripped; empty when it fails."""
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def proc_field(path: str, name: str) -> str:
    """The value of the first `name:` line of a /proc file."""
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return "unknown"


def machine() -> dict[str, str]:
    """The machine, the software versions and the code measured."""
    os_release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    redis_version = command_output(["redis-server", "--version"])
    version = next((w[2:] for w in redis_version.split() if w.startswith("v=")), redis_version)
    commit = command_output(["git", "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "status", "--porcelain", "--", "src"])
    mem_gib = int(proc_field("/proc/meminfo", "MemTotal").split()[0]) / 1024**2
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": proc_field("/proc/cpuinfo", "model name"),
        "ram": f"{mem_gib:.1f} GiB",
        "os": f"{os_release.get('PRETTY_NAME', 'unknown').strip(chr(34))}, {platform.system()}"
        f" {platform.release()}",
        "python": platform.python_version(),
        "redis_server": version,
        "commit": f"{commit}{' with uncommitted changes in src/' if dirty else ''}",
    }


def cpu_line(figures: dict[str, Figure], whole: dict[str, float]) -> str:
    """How busy the machine was with other work while measuring."""
    parts = [f"{name} {f.raw['cpu']['other_processes_pct']:g} %" for name, f in figures.items()]
    return (
        f"CPU taken by processes outside the benchmark, as a share of all {CORES} cores:"
        f" {whole['other_processes_pct']:g} % over the whole run ({', '.join(parts)});"
        f" stolen by the hypervisor: {whole['steal_pct']:g} %. Such load competes with the"
        " servers measured."
    )


def table(figures: dict[str, Figure]) -> list[str]:
    """The results table in Markdown."""
    lines = ["| figure | target | measured | verdict |", "|---|---|---|---|"]
    for name, figure in figures.items():
        for target in TARGETS[name]:
            text, met = figure.cells[target.key]
            verdict = "info" if met is None else "met" if met else "**NOT met**"
            cell = text.replace("|", "\\|")
            lines.append(f"| {target.figure} | {target.target} | {cell} | {verdict} |")
    return lines


def method_notes(figures: dict[str, Figure]) -> list[str]:
    """How each figure was measured."""
    notes = ["## Method", ""]
    notes += [
        "All traffic is on 127.0.0.1. A throwaway `redis-server --save '' --appendonly no` on a"
        " free port holds everything; every RideFlow process is started by the benchmark with"
        " `RIDEFLOW_LOG_LEVEL=WARNING`, `RIDEFLOW_DRIVER_STALE_S=300`, `RIDEFLOW_RATE_ROUTES=[]`"
        " and a token-bucket `default` policy of 10^9 requests/s, rate limiting off unless"
        " stated. HTTP load comes from `bench/loadgen.py` (keep-alive HTTP/1.1, one request in"
        " flight per connection) running in the benchmark process, so the load generator, the"
        f" server and Redis share the machine's {len(os.sched_getaffinity(0))} cores."
        " Percentiles are nearest-rank over every post-warmup request; open-loop latency is"
        " counted from each request's scheduled send time, so a stalled server cannot hide its"
        " queueing (no coordinated omission).",
        "",
    ]
    dispatch = figures.get("dispatch")
    seeded = (
        f" (seeding took {dispatch.raw['seed_s']} s)"
        if dispatch and "seed_s" in dispatch.raw
        else ""
    )
    notes += [
        f"1. **`POST /v1/rides`.** One `rideflow api` process (rate limiting off) and the bare"
        f" FastAPI + `XADD` app of `bench/baseline_app.py` (uvicorn, uvloop, httptools), both"
        f" started at once and measured strictly alternately, {RIDE_ROUNDS} rounds each: closed"
        f" loop, {RIDE_CONNECTIONS} connections, {WARMUP_S:g} s warmup + {RIDE_DURATION_S:g} s."
        f" Throughput is the median over rounds; the ratio is RideFlow's median over the"
        f" baseline's. Bodies cycle over {RIDE_BODIES:,} pre-built requests, each with its own"
        f" `rider_id`, pickup and dropoff uniformly within {RIDE_RADIUS_KM} km of the centre of"
        f" Bengaluru. Any answer other than 202 counts as a failure. Then open loop at"
        f" {OPEN_RATE:,.0f} req/s offered, {OPEN_CONNECTIONS} connections, {WARMUP_S:g} s warmup"
        f" + {OPEN_DURATION_S:g} s.",
        f"2. **dequeue -> ASSIGNED.** Redis is flushed, then {DRIVERS:,} drivers are seeded{seeded}"
        f" in this process with RideFlow's own `Drivers` service (`create`, `record` in batches"
        f" of {POSITION_BATCH:,}, `set_status(online)`), uniformly over a {SQUARE_KM:g} x"
        f" {SQUARE_KM:g} km square centred on 12.9716, 77.5946; all must be in the pool. One"
        f" `rideflow dispatcher --concurrency {DISPATCH_CONCURRENCY}` process runs while"
        f" {DISPATCH_RIDES:,} rides are created in this process with `Rides.create`, open loop at"
        f" {DISPATCH_RATE:,.0f}/s (each at start + i/{DISPATCH_RATE:g} s, latency does not move"
        f" the schedule), pickups uniform over the same square. After at most {ASSIGN_WAIT_S:g}"
        f" s for every ride to settle, each ride hash is read in one pipeline: dequeue ->"
        f" ASSIGNED is `t_ASSIGNED - t_SEARCHING` and queued -> ASSIGNED `t_ASSIGNED -"
        f" t_QUEUED`, both stamped by Redis `TIME` inside RideFlow's Lua scripts. `t_SEARCHING` is"
        f" stamped by `ride_begin`, the first script a dispatcher worker runs for a ride, so the"
        f" time an entry waits in the dispatcher's in-process queue after `XREADGROUP` counts in"
        f" queued -> ASSIGNED only. The sanity check counts ASSIGNED rides naming the same"
        f" driver, and drivers whose `ride` field names another ride.",
        f"3. **Positions.** One `rideflow api` process (rate limiting off) and the {DRIVERS:,}"
        f" drivers of figure 2. {BATCH_BODIES} pre-built bodies of {BATCH_SIZE} positions"
        f" (each driver once per cycle, a few metres from its seeded place) are cycled, closed"
        f" loop, {POSITION_CONNECTIONS} connections, {WARMUP_S:g} s warmup +"
        f" {POSITION_DURATION_S:g} s. positions/s = 200 answers/s x {BATCH_SIZE}. One batch"
        f" sent with httpx before and one after must each answer `accepted` = {BATCH_SIZE} and"
        f" `rejected` = [].",
        f"4. **Rate-limit check.** (a, the verdict) Two `rideflow api` processes, identical but"
        f" for `RIDEFLOW_RATE_LIMIT_ENABLED` (true/false), measured alternately, {LIMIT_ROUNDS}"
        f" rounds each, one request at a time on one connection (closed loop, so no timer"
        f" granularity enters the latencies), {WARMUP_S:g} s warmup +"
        f" {LIMIT_DURATION_S:g} s, against `GET {LIMIT_PATH}` (a 404 after one Redis read;"
        f" with limits on it still passes one token-bucket check, and no 429 is allowed). The"
        f" added latency is the median p50 with limits on minus the median p50 with them off;"
        f" a sample request checks the `RateLimit` headers are present exactly when on."
        f" (b, for information) `RateLimiter.hit` called in this process {LIMIT_CALLS:,} times"
        f" in a row per algorithm (after {LIMIT_WARM_CALLS} warm-up calls), limit 10^9 per"
        f" 60 s so every hit is admitted; the time is the whole awaited call, Redis round trip"
        f" included.",
        "",
        "Raw numbers, per round, are in `bench/out/results.json`, every ride of figure 2 in"
        " `bench/out/dispatch_rides.csv`, the servers' logs in `bench/out/logs/`. The CPU"
        " shares above come from `/proc/stat` less the CPU time of this process and of every"
        " process it started.",
    ]
    return notes


def write_report(
    figures: dict[str, Figure], info: dict[str, str], when: datetime, extra: dict[str, Any]
) -> None:
    """RESULTS.md: when, where, how, the table, and the method."""
    lines = [
        "# RideFlow benchmark results",
        "",
        f"- Date: {when:%Y-%m-%d %H:%M} UTC; the whole run took {extra['total_s']:.0f} s.",
        f"- Machine: {info['nproc']} cores (nproc), {info['cpu']}, {info['ram']} RAM,"
        f" {info['os']}.",
        f"- Software: Python {info['python']}, redis-server {info['redis_server']}; RideFlow"
        f" commit {info['commit']}.",
        f"- Load average (1 min) before / after the run: {extra['load_before']:.2f} /"
        f" {extra['load_after']:.2f}.",
        f"- {cpu_line(figures, extra['cpu'])}",
        f"- Command: `{COMMAND}` (runs `python -m bench.run` from the project root).",
        "",
        "## Results",
        "",
        *table(figures),
        "",
        *method_notes(figures),
        "",
    ]
    RESULTS_MD.write_text("\n".join(lines))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=list(TARGETS),
        help="measure only this figure (repeatable); RESULTS.md is then left alone",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, then write results.json and (for a full run) RESULTS.md."""
    args = parse_args(argv)
    only = set(args.only or TARGETS)
    signal.signal(signal.SIGTERM, interrupt)
    LOGS.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    figures, cpu = measure_all(only)
    extra = {
        "total_s": round(time.perf_counter() - started, 1),
        "cpu": cpu,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    info = machine()
    report = {
        "date": when.isoformat(timespec="seconds"),
        "command": COMMAND,
        "machine": info,
        **extra,
        "figures": {
            name: {
                "cells": {k: {"measured": t, "met": m} for k, (t, m) in f.cells.items()},
                **f.raw,
            }
            for name, f in figures.items()
        },
    }
    RESULTS_JSON.write_text(json.dumps(report, indent=2) + "\n")
    say("\n".join(["", *table(figures), "", f"total {extra['total_s']:.0f} s"]))
    if only == set(TARGETS):
        write_report(figures, info, when, extra)
        say(f"wrote {RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.relative_to(ROOT)}")
    return 0  # a target not met is a result, reported above, not a failure of the run


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; every process this run started has been stopped")
        sys.exit(130)
