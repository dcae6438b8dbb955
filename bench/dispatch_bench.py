"""Figures 2 (dequeue -> OFFERED with 50,000 drivers) and 3 (driver positions)."""

from __future__ import annotations

import asyncio
import csv
import random
from collections import Counter
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
from redis.asyncio import Redis

from bench.harness import (
    CITY,
    DISPATCH_CONCURRENCY,
    DRIVERS,
    HOST,
    OUT,
    POSITION_BATCH,
    SEED,
    SQUARE_KM,
    WARMUP_S,
    Figure,
    Fleet,
    Processes,
    Server,
    audit_city,
    brief,
    cancel_live,
    failures,
    json_auth_headers,
    latency_summary,
    point_in_disc,
    point_in_square,
    rideflow_env,
    say,
    start_api,
    start_dispatcher,
)
from bench.loadgen import RequestSpec, run_load
from bench.verify import last_event_id, replay, verdict_text
from rideflow.orders.schemas import RideCreate
from rideflow.orders.store import Orders
from rideflow.redis import keys
from rideflow.schemas import Point
from rideflow.services import Services, build_services

RIDES_CSV = OUT / "dispatch_rides.csv"
MAX_REQUESTS = 500_000

# 2. dequeue -> OFFERED
DISPATCH_RATE = 500.0
DISPATCH_RIDES = 5000
SETTLE_WAIT_S = 30.0
DISPATCH_WINDOW_S = 300.0  # no offer lapses while figure 2 runs

# 3. positions
BATCH_SIZE = 500
BATCH_BODIES = 100
JITTER_DEG = 0.0005
POSITION_CONNECTIONS = 6
POSITION_DURATION_S = 6.0


# ---------------------------------------------------------------------------------------------
# 2. dequeue -> OFFERED


async def paced_rides(
    orders: Orders, count: int = DISPATCH_RIDES
) -> tuple[list[str], dict[str, float]]:
    """Create `count` rides open loop at DISPATCH_RATE/s on a fixed schedule."""
    rng = random.Random(SEED + 2)
    bodies = []
    for i in range(count):
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
        tasks.append(asyncio.create_task(orders.create_ride(body)))
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
        pipe.hmget(keys.order(CITY, ride_id), names)
    return cast(list[list[Any]], await pipe.execute())


async def wait_settled(redis: Redis, ride_ids: list[str]) -> Counter[str]:
    """Poll until every ride is OFFERED or no longer in flight, at most SETTLE_WAIT_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_WAIT_S
    while True:
        statuses = Counter(str(s) for (s,) in await ride_fields(redis, ride_ids, ["status"]))
        in_flight = statuses["QUEUED"] + statuses["SEARCHING"]
        if in_flight == 0 or loop.time() > deadline:
            return statuses
        await asyncio.sleep(0.2)


async def double_offers(redis: Redis, offered: list[tuple[str, str]]) -> dict[str, int]:
    """Drivers named by two OFFERED rides, and drivers whose hash names another order."""
    drivers = [driver for _ride, driver in offered]
    pipe = redis.pipeline(transaction=False)
    for _ride, driver in offered:
        pipe.hget(keys.driver(CITY, driver), "order")
    held = await pipe.execute()
    mismatched = sum(h != ride for (ride, _d), h in zip(offered, held, strict=True))
    return {"repeated_drivers": len(drivers) - len(set(drivers)), "mismatched_holders": mismatched}


async def figure_dispatch(
    procs: Processes,
    svc: Services,
    redis_url: str,
    *,
    rides: int = DISPATCH_RIDES,
    rides_csv: Path | None = RIDES_CSV,
    name: str = "dispatcher",
) -> Figure:
    """One dispatcher, rides created at a fixed rate, latencies from the rides' own stamps
    (`rides` of them; every ride's row written to `rides_csv` unless None)."""
    settings = svc.settings.model_copy(update={"ride_offer_window_s": DISPATCH_WINDOW_S})
    orders = build_services(settings, svc.redis).orders
    after = await last_event_id(svc.redis)
    dispatcher = await start_dispatcher(procs, redis_url, svc.redis, name=name)
    try:
        ride_ids, pacing = await paced_rides(orders, rides)
        say(f"  created {pacing['rides']:,} rides at {pacing['achieved_per_s']:,.0f}/s")
        statuses = await wait_settled(svc.redis, ride_ids)
    finally:
        procs.stop(dispatcher)
    warnings = sum(" WARNING " in line for line in dispatcher.output().splitlines())
    names = ["status", "driver", "t_QUEUED", "t_SEARCHING", "t_OFFERED", "offers"]
    rows = await ride_fields(svc.redis, ride_ids, names)
    if rides_csv is not None:
        write_rides_csv(rides_csv, ride_ids, names, rows)
    done = [(rid, row) for rid, row in zip(ride_ids, rows, strict=True) if row[0] == "OFFERED"]
    checks = await double_offers(svc.redis, [(rid, row[1]) for rid, row in done])
    breaches = await audit_city(svc.redis)
    reoffered = sum(int(row[5] or 0) > 1 for _rid, row in done)
    dequeue = latency_summary([(int(r[4]) - int(r[3])) / 1000 for _rid, r in done])
    queued = latency_summary([(int(r[4]) - int(r[2])) / 1000 for _rid, r in done])
    say(f"  dequeue -> OFFERED {dequeue}; queued -> OFFERED {queued}; audit {len(breaches)}")
    cancelled = await cancel_live(svc)
    replayed = await replay(svc.redis, after)
    say(f"  cancelled {cancelled:,} rides, which frees their drivers")
    say(f"  events replayed {replayed.read:,}: {verdict_text(replayed)}")
    raw = {
        "pacing": pacing,
        "statuses": dict(statuses),
        "dequeue_to_offered": dequeue,
        "queued_to_offered": queued,
        "dispatcher_log_warnings": warnings,
        "offered_more_than_once": reoffered,
        "audit": breaches[:20],
        "audit_breaches": len(breaches),
        "cancelled_after": cancelled,
        "double_offers": len(replayed.violations),
        "inconsistent_events": len(replayed.inconsistencies),
        "replay": verdict_text(replayed),
        **checks,
    }
    figure = dispatch_figure(raw, len(done), rides)
    figure.samples["2. dequeue -> OFFERED (Redis time)"] = [
        (int(r[4]) - int(r[3])) / 1000 for _rid, r in done
    ]
    return figure


def write_rides_csv(
    path: Path, ride_ids: list[str], names: list[str], rows: list[list[Any]]
) -> None:
    """Every ride's status, driver and stamps, for a closer look at slow ones."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["ride_id", *names])
        writer.writerows([ride_id, *row] for ride_id, row in zip(ride_ids, rows, strict=True))


def dispatch_figure(raw: dict[str, Any], offered: int, rides: int = DISPATCH_RIDES) -> Figure:
    """Cells of figure 2: the targets hold only if every ride was offered, once, and the audit
    is clean."""
    dequeue, queued = raw["dequeue_to_offered"], raw["queued_to_offered"]
    doubles = raw["repeated_drivers"] + raw["mismatched_holders"] + raw["double_offers"]
    complete = offered == rides and raw["offered_more_than_once"] == 0
    caveat = "" if complete else f" (only {offered:,} of {rides:,} offered once)"
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
    others = {s: n for s, n in raw["statuses"].items() if s != "OFFERED"}
    warned = raw["dispatcher_log_warnings"]
    breaches = raw["audit_breaches"]
    figure.cells["dispatch_all"] = (
        f"{offered:,} of {rides:,}{f' (others: {others})' if others else ''} / {doubles};"
        f" events: {raw['replay']}; `rideflow audit`:"
        f" {'clean' if not breaches else f'{breaches} breaches'}"
        f"{f'; the dispatcher logged {warned} warnings' if warned else ''}",
        complete and doubles == 0 and breaches == 0 and raw["inconsistent_events"] == 0,
    )
    figure.cells["dispatch_queued"] = (
        f"p50 {queued['p50_ms']:.2f} ms, p90 {queued['p90_ms']:.2f}, p99 {queued['p99_ms']:.2f},"
        f" max {queued['max_ms']:.1f}",
        None,
    )
    return figure


def dispatch_note(seeded: str) -> str:
    """How figure 2 is measured."""
    return (
        f"2. **dequeue -> OFFERED.** Redis is flushed, then {DRIVERS:,} drivers are"
        f" seeded{seeded} in this process with RideFlow's own `Drivers` service (`create`,"
        f" `record` in batches of {POSITION_BATCH:,}, `set_status(online)`), uniformly over a"
        f" {SQUARE_KM:g} x {SQUARE_KM:g} km square centred on 12.9716, 77.5946; all must be in"
        f" the pool. One `rideflow dispatcher --concurrency {DISPATCH_CONCURRENCY}` process"
        f" runs while {DISPATCH_RIDES:,} rides are created in this process with"
        f" `Orders.create_ride`, open loop at {DISPATCH_RATE:,.0f}/s (each at start +"
        f" i/{DISPATCH_RATE:g} s, latency does not move the schedule), pickups uniform over the"
        f" same square; their offer window is {DISPATCH_WINDOW_S:g} s, so that no offer lapses"
        f" and is made again while measuring. After at most {SETTLE_WAIT_S:g} s for every ride"
        " to settle, each ride hash is read in one pipeline: dequeue -> OFFERED is `t_OFFERED -"
        " t_SEARCHING` and queued -> OFFERED `t_OFFERED - t_QUEUED`, both stamped by Redis"
        " `TIME` inside RideFlow's Lua scripts. `t_SEARCHING` is stamped by `order_begin`, the"
        " first script a dispatcher worker runs for a ride, so the time an entry waits in the"
        " dispatcher's in-process queue after `XREADGROUP` counts in queued -> OFFERED only."
        " The sanity check counts OFFERED rides naming the same driver and drivers whose"
        " `order` field names another ride, and runs `rideflow audit`"
        " once the dispatcher has stopped; then every ride is cancelled, which frees its"
        " driver for the next figures."
    )


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
        reply = await client.post(
            "/v1/drivers/locations", content=body, headers=json_auth_headers()
        )
    answer = reply.json() if reply.status_code == 200 else {}
    if answer.get("accepted") != BATCH_SIZE or answer.get("rejected") != []:
        raise RuntimeError(
            f"a batch of {BATCH_SIZE} was not wholly accepted: {reply.status_code} "
            f"{reply.text[:300]}"
        )


async def figure_positions(
    procs: Processes, redis_url: str, fleet: Fleet, name: str = "api-positions"
) -> Figure:
    """Closed loop of 500-position batches; positions/s counts only 200 answers."""
    bodies = position_bodies(fleet)
    api = await start_api(procs, name, rideflow_env(redis_url))
    headers = json_auth_headers()  # a batch of many drivers' positions: ADMIN

    def make(i: int) -> RequestSpec:
        return ("POST", "/v1/drivers/locations", bodies[i % BATCH_BODIES], headers)

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


def positions_note() -> str:
    """How figure 3 is measured."""
    return (
        f"3. **Positions.** One `rideflow api` process (rate limiting off) and the {DRIVERS:,}"
        f" drivers of figure 2. {BATCH_BODIES} pre-built bodies of {BATCH_SIZE} positions"
        f" (each driver once per cycle, a few metres from its seeded place) are cycled, closed"
        f" loop, {POSITION_CONNECTIONS} connections, {WARMUP_S:g} s warmup +"
        f" {POSITION_DURATION_S:g} s. positions/s = 200 answers/s x {BATCH_SIZE}. One batch"
        f" sent with httpx before and one after must each answer `accepted` = {BATCH_SIZE} and"
        f" `rejected` = []."
    )
