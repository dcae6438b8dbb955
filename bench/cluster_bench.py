"""Figure 23: the main figures on a 3-master Redis Cluster against a single Redis, in one run.

A throwaway redis-server and a throwaway 3-master cluster (`bench/cluster.py`) of the figure's
own, both empty. On each in turn, with the very same load: figure 1's `POST /v1/rides`
saturation (an API process per side, rounds alternating), figure 2's dequeue -> OFFERED at 500
rides/s (a smaller fleet, the same on both sides) and figure 3's positions ingest. Each pair is
reported with the cluster/single ratio; the target is the cluster within 20 % of the single Redis.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import dispatch_bench
from bench.cluster import RedisClusterServer
from bench.harness import (
    DISPATCH_CONCURRENCY,
    SQUARE_KM,
    WARMUP_S,
    Figure,
    Processes,
    Server,
    bench_settings,
    failures,
    make_fleet,
    redis_url_of,
    rideflow_env,
    say,
    seed_drivers,
    services,
    start_api,
    start_redis,
)
from bench.loadgen import LoadResult
from rideflow.redis.connections import create_redis

SIDES = ("single", "cluster")
RIDE_ROUNDS = 3
DRIVERS = 20_000
"""The fleet of (b) and (c): smaller than figure 2's 50,000 so that seeding it twice is quick."""
DISPATCH_RIDES = 1_500
DISPATCH_ROUNDS = 3
POSITION_ROUNDS = 3
THROUGHPUT_FLOOR = 0.8
LATENCY_CEILING = 1.2


@contextmanager
def own_servers(procs: Processes, tmp: Path) -> Iterator[dict[str, str]]:
    """A single redis-server and a 3-master cluster, both empty; their URLs by side. The
    cluster's nodes are handed to `procs`, so that they are stopped by pid with the rest (also
    on Ctrl-C) and their CPU counts as the benchmark's."""
    single = start_redis(procs, tmp, name="redis-single")
    cluster = RedisClusterServer(tmp / "cluster")
    nodes: list[Server] = []
    try:
        cluster.start()
        for node in cluster.nodes:
            assert node.proc is not None
            server = Server(
                f"cluster-node-{node.port}", node.proc, node.port, node.dir / "redis.log"
            )
            procs.live[node.proc.pid] = server
            nodes.append(server)
        if cluster.dbsize() != 0:
            raise RuntimeError("the new cluster is not empty")
        yield {"single": redis_url_of(single), "cluster": cluster.url}
    finally:
        for server in nodes:
            procs.stop(server)
        cluster.stop()
        procs.stop(single)


async def flush(url: str) -> None:
    """Empty one side (FLUSHALL reaches every master of a cluster)."""
    client = create_redis(bench_settings(url), "bench-flush")
    try:
        await client.flushall()
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------------------
# (a) figure 1's saturation


async def rides_pair(procs: Processes, urls: dict[str, str]) -> dict[str, list[LoadResult]]:
    """An API process per side, both up at once, measured strictly alternately."""
    from bench.run import ride_requests, saturate

    make = ride_requests()
    apis: dict[str, Server] = {}
    rounds: dict[str, list[LoadResult]] = {side: [] for side in SIDES}
    try:
        for side in SIDES:
            apis[side] = await start_api(procs, f"api-rides-{side}", rideflow_env(urls[side]))
        for _ in range(RIDE_ROUNDS):
            for side in SIDES:
                rounds[side].append(await saturate(apis[side], make))
    finally:
        for api in apis.values():
            procs.stop(api)
    return rounds


# ---------------------------------------------------------------------------------------------
# (b) figure 2's dequeue -> OFFERED and (c) figure 3's positions


async def fleet_pair(procs: Processes, urls: dict[str, str]) -> dict[str, Any]:
    """Seed the same fleet on both sides, then dispatch rounds and position rounds, alternating."""
    fleet = make_fleet(DRIVERS)
    out: dict[str, Any] = {side: {"seed_s": 0.0, "rounds": [], "positions": []} for side in SIDES}
    async with AsyncExitStack() as stack:
        svcs = {side: await stack.enter_async_context(services(urls[side])) for side in SIDES}
        for side in SIDES:
            say(f"  seeding {len(fleet):,} online drivers on the {side} side")
            out[side]["seed_s"] = round(await seed_drivers(svcs[side], fleet), 1)
        for n in range(DISPATCH_ROUNDS):
            for side in SIDES:
                say(f"  dispatch round {n + 1}, {side}")
                figure = await dispatch_bench.figure_dispatch(
                    procs,
                    svcs[side],
                    urls[side],
                    rides=DISPATCH_RIDES,
                    rides_csv=None,
                    name=f"dispatcher-{side}",
                )
                out[side]["rounds"].append(dispatch_round(figure))
    for n in range(POSITION_ROUNDS):
        for side in SIDES:
            say(f"  positions round {n + 1}, {side}")
            figure = await dispatch_bench.figure_positions(
                procs, urls[side], fleet, name=f"api-positions-{side}"
            )
            if "positions_per_s" not in figure.raw:
                raise RuntimeError(f"positions on the {side} side: {figure.cells}")
            out[side]["positions"].append(
                {"per_s": figure.raw["positions_per_s"], "load": figure.raw["load"]}
            )
    return out


def dispatch_round(figure: Figure) -> dict[str, Any]:
    """What one round of figure 2 says about itself: its latencies and its sanity checks."""
    raw = figure.raw
    clean = all(met is not False for key, (_t, met) in figure.cells.items() if key.endswith("all"))
    return {
        "dequeue_to_offered": raw["dequeue_to_offered"],
        "statuses": raw["statuses"],
        "pacing": raw["pacing"],
        "audit_breaches": raw["audit_breaches"],
        "double_offers": raw["double_offers"] + raw["repeated_drivers"],
        "clean": clean and raw["statuses"].get("OFFERED", 0) == DISPATCH_RIDES,
    }


# ---------------------------------------------------------------------------------------------
# The figure


async def figure_cluster(procs: Processes, tmp: Path) -> Figure:
    """(a), (b) and (c) on a single Redis and on a 3-master cluster of the figure's own."""
    with own_servers(procs, tmp) as urls:
        say(f"  single {urls['single']}, cluster {urls['cluster']}")
        rides = await rides_pair(procs, urls)
        for url in urls.values():
            await flush(url)  # the rides queued by (a) would reach the dispatchers of (b)
        fleet = await fleet_pair(procs, urls)
    return cluster_figure(rides, fleet)


def ratio_text(single: float, cluster: float, unit: str, digits: int = 0) -> str:
    """'cluster X vs single Y unit: Z x'."""
    ratio = cluster / single if single else 0.0
    return f"cluster {cluster:,.{digits}f} vs single {single:,.{digits}f} {unit}: {ratio:.2f}x"


def cluster_figure(rides: dict[str, list[LoadResult]], fleet: dict[str, Any]) -> Figure:
    """Per side, the median over its rounds of each figure (of each percentile, for latency:
    one round the machine starved does not decide), and the ratios."""
    rps = {side: statistics.median(r.throughput for r in rides[side]) for side in SIDES}
    bad = sum(failures(r, 202) for side in SIDES for r in rides[side])
    lat = {
        side: {
            pct: statistics.median(r["dequeue_to_offered"][pct] for r in fleet[side]["rounds"])
            for pct in ("p50_ms", "p99_ms")
        }
        for side in SIDES
    }
    clean = all(r["clean"] for side in SIDES for r in fleet[side]["rounds"])
    pos = {side: statistics.median(p["per_s"] for p in fleet[side]["positions"]) for side in SIDES}
    raw: dict[str, Any] = {
        "rides_rounds": {side: [r.as_dict() for r in rides[side]] for side in SIDES},
        "rides_median_rps": {side: round(v, 1) for side, v in rps.items()},
        "dequeue_to_offered_median": lat,
        "positions_median_per_s": pos,
        "fleet": fleet,
    }
    for side in SIDES:
        rounds = [r["dequeue_to_offered"] for r in fleet[side]["rounds"]]
        say(
            f"  {side}: rides {rps[side]:,.0f} req/s; dequeue -> OFFERED p50"
            f" {[r['p50_ms'] for r in rounds]} ms, p99 {[r['p99_ms'] for r in rounds]} ms;"
            f" positions {[p['per_s'] for p in fleet[side]['positions']]}/s"
        )
    figure = Figure(raw=raw)
    each = "; ".join(
        f"{side} " + ", ".join(f"{r.throughput:,.0f}" for r in rides[side]) for side in SIDES
    )
    rides_ratio = rps["cluster"] / rps["single"] if rps["single"] else 0.0
    figure.cells["cluster_rides"] = (
        f"{ratio_text(rps['single'], rps['cluster'], 'req/s')} (medians; rounds: {each};"
        f" {bad} not 202)",
        rides_ratio >= THROUGHPUT_FLOOR and bad == 0,
    )
    checks = "" if clean else " (a round was not clean: see results.json)"
    for pct in ("p50", "p99"):
        single, cluster = lat["single"][f"{pct}_ms"], lat["cluster"][f"{pct}_ms"]
        figure.cells[f"cluster_dispatch_{pct}"] = (
            f"{ratio_text(single, cluster, 'ms', 2)} (medians of {DISPATCH_ROUNDS} rounds of"
            f" {DISPATCH_RIDES:,} rides each){checks}",
            clean and single > 0 and cluster / single <= LATENCY_CEILING,
        )
    pos_ratio = pos["cluster"] / pos["single"] if pos["single"] else 0.0
    figure.cells["cluster_positions"] = (
        f"{ratio_text(pos['single'], pos['cluster'], 'positions/s')} (medians of"
        f" {POSITION_ROUNDS} rounds each)",
        pos_ratio >= THROUGHPUT_FLOOR,
    )
    return figure


def cluster_note() -> str:
    """How figure 23 is measured."""
    return (
        "23. **A 3-master Redis Cluster vs a single Redis.** The figure starts a redis-server and"
        " a Redis Cluster of three masters (`bench/cluster.py`: `redis-server --cluster-enabled"
        " yes` on free ports, no replicas, no persistence, joined by `redis-cli --cluster"
        " create`) of its own; RideFlow reaches the cluster through"
        " `RIDEFLOW_REDIS_URL=redis+cluster://…` (redis-py's asyncio `RedisCluster`, with"
        " hiredis packing and scripts routed by their first key: `rideflow.redis.cluster_client`)."
        " Every"
        " load below runs on both, the single Redis first, the sides alternating."
        f" (a) Figure 1's closed-loop saturation of `POST /v1/rides`, one API process per side"
        f" started together, {RIDE_ROUNDS} rounds each, medians compared."
        f" (b) {DRIVERS:,} drivers seeded on each side (fewer than figure 2's, so that seeding"
        f" twice stays short; the same fleet, uniform over the {SQUARE_KM:g} km square), then"
        f" figure 2's run with {DISPATCH_RIDES:,} rides at {dispatch_bench.DISPATCH_RATE:,.0f}/s"
        f" and one dispatcher (`--concurrency {DISPATCH_CONCURRENCY}`) per round,"
        f" {DISPATCH_ROUNDS} rounds per side, its rides cancelled after each round; the"
        " dequeue -> OFFERED p50 and p99 of each round (Redis `TIME` stamps, as in figure 2);"
        " per side the median over its rounds of each is compared (one round a busy machine"
        " starved does not decide); a round counts only if every ride was offered once,"
        " the audit is clean and the event replay finds no double offer."
        f" (c) Figure 3's positions ingest ({WARMUP_S:g} s warmup +"
        f" {dispatch_bench.POSITION_DURATION_S:g} s per round, a fresh API process each),"
        f" {POSITION_ROUNDS} rounds per side, medians compared. Targets: throughput on the"
        f" cluster >= {THROUGHPUT_FLOOR:g}x the single Redis', latency <= {LATENCY_CEILING:g}x."
        " All of a city's keys share one hash slot, so a city's traffic goes to one master of"
        " the cluster either way: the figure measures what the cluster client costs, not what"
        " more masters could serve."
    )
