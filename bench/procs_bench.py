"""Figure 21: more processes on the one machine, as `rideflow up --api-workers N --dispatchers M`
runs them. (a) `POST /v1/rides` at saturation, 2 API processes sharing a port against 1, with
figure 1's load generator and requests, measured alternately in the same run; (b) dispatch
throughput, 2 dispatchers against 1, each draining the same number of queued rides.

The load generator runs in this process on the same 2 cores as the API processes and Redis, so
the CPU time of each (per request) is measured too: it bounds what a second API process can add
(`bound` below), and the report says so beside the ratio.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
from redis.asyncio import Redis

from bench.harness import (
    CITY,
    CORES,
    DISPATCH_CONCURRENCY,
    HOST,
    SEED,
    SQUARE_KM,
    Figure,
    Processes,
    Server,
    cancel_live,
    failures,
    free_port,
    machine_cpu_s,
    make_fleet,
    point_in_disc,
    point_in_square,
    process_cpu_s,
    redis_url_of,
    rideflow_env,
    say,
    seed_drivers,
    services,
    start_dispatcher,
    wait_ready,
)
from bench.loadgen import LoadResult, MakeRequest
from rideflow.api.listener import PROCESS_HEADER
from rideflow.orders.schemas import RideCreate
from rideflow.redis import keys
from rideflow.schemas import Point
from rideflow.services import Services

ROUNDS = 3
"""Rounds of each configuration, alternating (one, two, one, two, ...)."""
DRIVERS = 20_000
"""Drivers seeded for (b), uniformly over figure 2's square."""
RIDES = 4_000
"""Rides queued for each round of (b)."""
WINDOW_S = 300.0
"""(b)'s offer window: no offer lapses (and is made again) while measured."""
SETTLE_S = 60.0
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# CPU time, by what uses it


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds each part used over a window of wall time, and what the rest of the machine
    (other processes, other agents) took."""

    wall_s: float
    parts: dict[str, float]
    each: list[float]  # the measured servers one by one (their balance)
    other_s: float

    def share(self, part: str) -> float:
        """Percent of one core."""
        return 100 * self.parts[part] / self.wall_s


async def metered(pids: dict[str, list[int]], run: Awaitable[T]) -> tuple[T, Usage]:
    """Await `run`, measuring the CPU time of `pids` by part, of this process ('generator')
    and of the whole machine."""

    def sample() -> tuple[float, float, dict[str, list[float]], float]:
        times = os.times()
        parts = {name: [process_cpu_s(p) for p in group] for name, group in pids.items()}
        return time.monotonic(), machine_cpu_s()[0], parts, times.user + times.system

    wall0, busy0, parts0, self0 = sample()
    result = await run
    wall1, busy1, parts1, self1 = sample()
    used = {name: sum(parts1[name]) - sum(parts0[name]) for name in pids}
    used["generator"] = self1 - self0
    first = next(iter(pids))
    each = [b - a for a, b in zip(parts0[first], parts1[first], strict=True)]
    other = max(0.0, (busy1 - busy0) - sum(used.values()))
    return result, Usage(wall1 - wall0, used, each, other)


# ---------------------------------------------------------------------------------------------
# (a) POST /v1/rides, 2 API processes vs 1


async def start_apis(procs: Processes, name: str, count: int, env: dict[str, str]) -> list[Server]:
    """`count` API processes on one port, started as `rideflow up` starts them; ready once each
    has answered."""
    port = free_port()
    servers = [
        procs.start(
            f"{name}-{n}",
            [sys.executable, "-m", "rideflow", "api", "--reuse-port", "--name", f"api-{n}"],
            {**env, "RIDEFLOW_PORT": str(port)},
            port,
        )
        for n in range(1, count + 1)
    ]
    waiting = {f"api-{n}" for n in range(1, count + 1)}

    async def all_answer() -> bool:
        try:  # a new connection each time: the kernel picks the process
            async with httpx.AsyncClient(timeout=1.0) as client:
                reply = await client.get(f"http://{HOST}:{port}/healthz")
        except httpx.TransportError:
            return False
        waiting.discard(reply.headers.get(PROCESS_HEADER, ""))
        return not waiting

    for server in servers:
        await wait_ready(server, all_answer, f"all {count} API processes to answer")
    return servers


@dataclass(frozen=True, slots=True)
class Saturation:
    result: LoadResult
    usage: Usage

    @property
    def rate(self) -> float:
        return self.result.throughput

    def per_request_us(self, part: str) -> float:
        """CPU microseconds `part` spent per request answered (over the whole run)."""
        return 1e6 * self.usage.parts[part] / max(1.0, self.rate * self.usage.wall_s)


async def saturated(servers: list[Server], redis: Server, make: MakeRequest) -> Saturation:
    from bench.run import saturate

    pids = {"api": [s.pid for s in servers], "redis": [redis.pid]}
    result, usage = await metered(pids, saturate(servers[0], make))
    say(
        f"    api CPU {' / '.join(f'{100 * c / usage.wall_s:.0f}' for c in usage.each)} %,"
        f" redis {usage.share('redis'):.0f} %, generator {usage.share('generator'):.0f} %,"
        f" other processes {100 * usage.other_s / usage.wall_s:.0f} % (of one core)"
    )
    return Saturation(result, usage)


async def api_rounds(procs: Processes, redis: Server) -> dict[int, list[Saturation]]:
    from bench.run import ride_requests

    make = ride_requests()
    env = rideflow_env(redis_url_of(redis))
    configs = {1: await start_apis(procs, "procs-one", 1, env)}
    configs[2] = await start_apis(procs, "procs-two", 2, env)
    rounds: dict[int, list[Saturation]] = {1: [], 2: []}
    try:
        for _ in range(ROUNDS):
            for count, servers in configs.items():
                rounds[count].append(await saturated(servers, redis, make))
    finally:
        for servers in configs.values():
            for server in servers:
                procs.stop(server)
    return rounds


def bound(
    one: Saturation, two: Saturation, api_us: float | None = None, generator: bool = True
) -> float:
    """The most 2 API processes could do against 1 if the machine were theirs, the generator's
    and Redis' alone: every core busy at the CPU costs per request measured with two (with the
    API's cost `api_us` instead, or without the generator's, when told), against one process
    busy for a whole core at its cost with one. Costs, not rates: what other processes took
    from a round cancels out."""
    api = two.per_request_us("api") if api_us is None else api_us
    per_request = api + two.per_request_us("redis")
    per_request += two.per_request_us("generator") if generator else 0.0
    return CORES * one.per_request_us("api") / per_request if per_request else 0.0


# ---------------------------------------------------------------------------------------------
# (b) dispatch throughput, 2 dispatchers vs 1


def ride_bodies(rng: random.Random) -> list[RideCreate]:
    """RIDES rides, pickups uniform over figure 2's square."""
    out = []
    for i in range(RIDES):
        (plat, plng), (dlat, dlng) = point_in_square(rng, SQUARE_KM), point_in_disc(rng, 10)
        pickup, dropoff = Point(lat=plat, lng=plng), Point(lat=dlat, lng=dlng)
        out.append(RideCreate(rider_id=f"rider-{i}", pickup=pickup, dropoff=dropoff))
    return out


async def created(svc: Services, bodies: list[RideCreate], size: int = 200) -> list[str]:
    """Create the rides, `size` at a time; their ids."""
    out: list[str] = []
    for start in range(0, len(bodies), size):
        chunk = bodies[start : start + size]
        done = await asyncio.gather(*(svc.orders.create_ride(b) for b in chunk))
        out += [ride_id for ride_id, _city in done]
    return out


@dataclass(frozen=True, slots=True)
class Drain:
    offered: int
    rate: float  # rides offered per second, first search to last offer (Redis time)
    usage: Usage


def signal_all(servers: list[Server], sig: signal.Signals) -> None:
    for server in servers:
        os.kill(server.pid, sig)


async def drain(
    procs: Processes, svc: Services, redis: Server, count: int, label: str, rng: random.Random
) -> Drain:
    """`count` dispatchers, paused (SIGSTOP) while RIDES rides are queued, then let go at once:
    every one of them starts on a full stream at the same moment."""
    url = redis_url_of(redis)
    extra = {"ride_offer_window_s": str(WINDOW_S)}
    dispatchers = [
        await start_dispatcher(
            procs, url, svc.redis, name=f"procs-dispatch-{label}-{n}", settings=extra
        )
        for n in range(1, count + 1)
    ]
    try:
        signal_all(dispatchers, signal.SIGSTOP)
        ride_ids = await created(svc, ride_bodies(rng))
        pids = {"dispatchers": [d.pid for d in dispatchers], "redis": [redis.pid]}
        signal_all(dispatchers, signal.SIGCONT)
        _, usage = await metered(pids, settled(svc.redis, ride_ids))
    finally:
        for d in dispatchers:
            procs.stop(d)
    rows = await fields(svc.redis, ride_ids, ["status", "t_SEARCHING", "t_OFFERED"])
    offered = [r for r in rows if r[0] == "OFFERED"]
    window_us = max(int(r[2]) for r in offered) - min(int(r[1]) for r in offered)
    rate = len(offered) / (window_us / 1e6) if window_us > 0 else 0.0
    say(
        f"  {count} dispatcher(s): {len(offered):,} of {RIDES:,} offered, {rate:,.0f} rides/s;"
        f" dispatcher CPU {' / '.join(f'{100 * c / usage.wall_s:.0f}' for c in usage.each)} %,"
        f" redis {usage.share('redis'):.0f} %"
    )
    await cancel_live(svc)  # frees the drivers for the next round
    return Drain(len(offered), rate, usage)


async def fields(redis: Redis, ride_ids: list[str], names: list[str]) -> list[list[Any]]:
    async with redis.pipeline(transaction=False) as pipe:
        for ride_id in ride_ids:
            pipe.hmget(keys.order(CITY, ride_id), names)
        return cast(list[list[Any]], await pipe.execute())


async def settled(redis: Redis, ride_ids: list[str]) -> None:
    """Until no ride is queued or searching any more (at most SETTLE_S)."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        rows = await fields(redis, ride_ids, ["status"])
        if not any(r[0] in ("QUEUED", "SEARCHING") for r in rows):
            return
        await asyncio.sleep(0.05)


async def dispatch_rounds(procs: Processes, redis: Server) -> dict[int, list[Drain]]:
    rounds: dict[int, list[Drain]] = {1: [], 2: []}
    rng = random.Random(SEED + 20)
    async with services(redis_url_of(redis)) as svc:
        say(f"  seeding {DRIVERS:,} online drivers")
        await seed_drivers(svc, make_fleet(DRIVERS, prefix="procs-d"))
        for r in range(ROUNDS):
            for count, done in rounds.items():
                done.append(await drain(procs, svc, redis, count, f"{count}x{r}", rng))
    return rounds


# ---------------------------------------------------------------------------------------------
# The figure


async def flush(redis: Server) -> None:
    client = Redis.from_url(redis_url_of(redis))
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def figure_procs(procs: Processes, redis_url: str, _tmp: Path) -> Figure:
    redis = next(s for s in procs.live.values() if redis_url_of(s) == redis_url)
    say("  (a) POST /v1/rides, 1 and 2 API processes in turn")
    apis = await api_rounds(procs, redis)
    await flush(redis)
    say("  (b) dispatch throughput, 1 and 2 dispatchers in turn")
    dispatch = await dispatch_rounds(procs, redis)
    await flush(redis)
    return procs_figure(apis, dispatch)


def median_by(items: list[T], key: Callable[[T], float]) -> T:
    """The item whose key is the median (the lower middle one for an even count)."""
    ranked = sorted(items, key=key)
    return ranked[(len(ranked) - 1) // 2]


def procs_figure(apis: dict[int, list[Saturation]], dispatch: dict[int, list[Drain]]) -> Figure:
    rate = {n: statistics.median(s.rate for s in runs) for n, runs in apis.items()}
    ratio = rate[2] / rate[1] if rate[1] else 0.0
    one, two = (median_by(apis[n], lambda s: s.rate) for n in (1, 2))
    ceiling = bound(one, two)
    ideal = bound(one, two, api_us=one.per_request_us("api"))
    no_generator = bound(one, two, generator=False)
    bad = sum(failures(s.result, 202) for runs in apis.values() for s in runs)
    d_rate = {n: statistics.median(d.rate for d in runs) for n, runs in dispatch.items()}
    d_ratio = d_rate[2] / d_rate[1] if d_rate[1] else 0.0
    unoffered = sum(RIDES - d.offered for runs in dispatch.values() for d in runs)
    cost = {
        n: {p: round(s.per_request_us(p), 1) for p in ("api", "redis", "generator")}
        for n, s in ((1, one), (2, two))
    }
    other = {n: round(100 * s.usage.other_s / s.usage.wall_s, 1) for n, s in ((1, one), (2, two))}
    balance = [round(100 * c / two.usage.wall_s) for c in two.usage.each]
    figure = Figure(
        raw={
            "api_median_rps": rate,
            "api_ratio": round(ratio, 4),
            "api_bound": round(ceiling, 4),
            "api_bound_at_one_process_cost": round(ideal, 4),
            "api_bound_without_generator": round(no_generator, 4),
            "api_cpu_us_per_request": cost,
            "api_other_processes_pct_of_core": other,
            "api_balance_pct_of_core": balance,
            "api_rounds": {
                n: [
                    {**s.result.as_dict(), "cpu_s": s.usage.parts, "wall_s": s.usage.wall_s}
                    for s in runs
                ]
                for n, runs in apis.items()
            },
            "dispatch_median_rides_per_s": d_rate,
            "dispatch_ratio": round(d_ratio, 4),
            "dispatch_rounds": {
                n: [
                    {
                        "offered": d.offered,
                        "rides_per_s": round(d.rate, 1),
                        "cpu_s": d.usage.parts,
                        "each_dispatcher_cpu_s": d.usage.each,
                        "wall_s": d.usage.wall_s,
                    }
                    for d in runs
                ]
                for n, runs in dispatch.items()
            },
        }
    )
    rounds = {n: ", ".join(f"{s.rate:,.0f}" for s in runs) for n, runs in apis.items()}
    figure.cells["procs_api"] = (
        f"{ratio:.2f}x ({rate[2]:,.0f} req/s with 2 processes, median of {rounds[2]}; 1 process"
        f" {rate[1]:,.0f}, median of {rounds[1]}; {bad} not 202)",
        ratio >= 1.6 and bad == 0,
    )
    shares = " / ".join(f"{b} %" for b in balance)
    figure.cells["procs_bound"] = (
        f"at most {ceiling:.2f}x on {CORES} cores shared with the load generator and Redis:"
        f" CPU per request with 2 processes (median round) API {cost[2]['api']:.0f} us, load"
        f" generator {cost[2]['generator']:.0f} us, Redis {cost[2]['redis']:.0f} us, against"
        f" API {cost[1]['api']:.0f} us with 1 process on a full core (at that API cost with 2"
        f" as well: {ideal:.2f}x; with a load generator costing nothing: {no_generator:.2f}x)."
        f" The two processes' CPU: {shares} of a core; other processes took {other[2]:g} % of a"
        f" core meanwhile ({other[1]:g} % with 1)",
        None,
    )
    d_rounds = {n: ", ".join(f"{d.rate:,.0f}" for d in runs) for n, runs in dispatch.items()}
    figure.cells["procs_dispatch"] = (
        f"{d_rate[2]:,.0f} rides/s with 2 dispatchers (rounds {d_rounds[2]}) vs"
        f" {d_rate[1]:,.0f} with 1 (rounds {d_rounds[1]}): {d_ratio:.2f}x;"
        f" {unoffered} of {RIDES * ROUNDS * 2:,} rides not offered",
        None,
    )
    return figure


def procs_note() -> str:
    """How figure 21 is measured."""
    return (
        f"21. **More processes.** (a) `rideflow api --reuse-port --name api-N` processes, as"
        f" `rideflow up --api-workers N` starts them: one on a port of its own, two sharing"
        f" another (each binds it with `SO_REUSEPORT`; the kernel spreads connections by a hash"
        f" of their addresses). All three start at once and are loaded strictly alternately,"
        f" {ROUNDS} rounds each, with figure 1's load (the same `bench/loadgen.py`, request"
        f" bodies, tokens, connections, warmup and duration; closed loop). The ratio is the"
        f" median throughput with two over the median with one. Meanwhile the CPU time of the"
        f" API processes, of `redis-server` and of this process (which runs only the load"
        f" generator then) is read from `/proc`, per request answered; the bound is"
        f" {CORES} cores divided by the sum of those per-request costs with two processes,"
        f" against one process busy for a whole core at its cost per request with one: what a"
        f" second API process could add if the generator, Redis and the API processes had"
        f" the machine to themselves (costs, not rates, so CPU taken by other processes in a"
        f" round cancels out); the same without the generator's cost is what a generator on"
        f" another machine would leave. Other processes' CPU (other agents share this machine)"
        f" is reported beside it: while it is high the measured ratio can even pass the bound,"
        f" since two busy processes win a larger share of contended cores than one does."
        f" (b) {DRIVERS:,}"
        f" drivers are seeded as in figure 2 (uniformly over the {SQUARE_KM:g} km square), and"
        f" in each round one or two `rideflow dispatcher --concurrency {DISPATCH_CONCURRENCY}`"
        f" processes are started and paused (SIGSTOP) while {RIDES:,} rides (pickups uniform"
        f" over the square, offer window {WINDOW_S:g} s so none lapses) are queued, then let"
        f" go together (SIGCONT). Throughput is the rides offered over the time from the first"
        f" search to the last offer, both stamped with Redis `TIME` by the scripts; then every"
        f" ride is cancelled, which frees its driver. {ROUNDS} rounds each, alternating; the"
        f" medians are reported side by side."
    )
