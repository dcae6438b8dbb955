"""Figures 5 to 7 (issue 3): `POST /v1/delivery/assign` with 50,000 drivers online, reject ->
next driver offered, and how late offers lapse, also across a dispatcher killed with SIGKILL.

They run on the fleet figure 2 seeded; each leaves it as it found it (its orders cancelled, which
frees their drivers) and ends with `rideflow audit`, which must be clean.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import orjson
from redis.asyncio import Redis

from bench.harness import (
    CITY,
    DISPATCH_CONCURRENCY,
    DRIVERS,
    HOST,
    SEED,
    SQUARE_KM,
    WARMUP_S,
    Figure,
    Processes,
    Server,
    audit_city,
    auth_headers,
    cancel_live,
    json_auth_headers,
    latency_summary,
    point_in_disc,
    point_in_square,
    redis_now_us,
    rideflow_env,
    say,
    start_api,
    start_dispatcher,
)
from bench.loadgen import RequestSpec, run_load
from bench.verify import freed_by, last_event_id, replay, verdict_text
from rideflow.auth.principal import Role
from rideflow.orders.schemas import RideCreate
from rideflow.orders.store import Orders
from rideflow.redis import keys
from rideflow.schemas import Point
from rideflow.services import Services, build_services
from rideflow.workers.dispatcher import SWEEP_LEASE_MS

# 5. POST /v1/delivery/assign
ASSIGN_RATE = 300.0
ASSIGN_DURATION_S = 10.0
ASSIGN_CONNECTIONS = 32
ASSIGN_RADIUS_KM = 5
ASSIGN_TIMEOUT_S = 30

# 6. reject -> next driver offered
REJECT_RIDES = 1000
REJECT_RATE = 50.0
REJECT_CONNECTIONS = 64
OFFER_WAIT_S = 15.0

# 7. offer lapse lateness
LAPSE_WINDOW_S = 1.0
LAPSE_RIDES = 120
LAPSE_RATE = 40.0
LAPSE_MAX_LAPSES = 1_000_000_000
LAPSE_KILL_AT_S = 7.0  # one dispatcher: killed -9 at this time, a replacement started at once
LAPSE_SECOND_AT_S = 14.0  # a second dispatcher joins
LAPSE_KILL2_AT_S = 19.0  # one of the two killed -9, a replacement started at once
LAPSE_END_S = 26.0
LAPSE_TARGET_MS = 250.0
KILL_WINDOW_BEFORE_MS = 1000  # lapses due this long before a kill may be held by the dead one
EVENT_BATCH = 10_000


async def city_events_after(redis: Redis, after: str) -> list[tuple[str, dict[str, str]]]:
    """Every entry of the city event stream after id `after`, in order."""
    out: list[tuple[str, dict[str, str]]] = []
    start = f"({after}"
    while True:
        batch = cast(
            list[tuple[str, dict[str, str]]],
            await redis.xrange(keys.city_events(CITY), min=start, count=EVENT_BATCH),
        )
        out.extend(batch)
        if len(batch) < EVENT_BATCH:
            return out
        start = f"({batch[-1][0]}"


def audit_text(breaches: list[str]) -> str:
    """The audit's verdict in a few words."""
    return "clean" if not breaches else f"{len(breaches)} breaches, e.g. {breaches[0]}"


# ---------------------------------------------------------------------------------------------
# 5. POST /v1/delivery/assign


def assign_bodies(count: int) -> list[bytes]:
    """`count` assignment requests, each with its own order id and a restaurant uniformly over
    the fleet's square."""
    rng = random.Random(SEED + 5)
    tag = f"{int(time.time())}"
    bodies = []
    for i in range(count):
        lat, lng = point_in_square(rng, SQUARE_KM)
        body = {
            "order_id": f"ORD-{tag}-{i}",
            "restaurant_id": "RST_1",
            "location": {"lat": lat, "lng": lng},
            "strategy": "nearest",
            "radius_km": ASSIGN_RADIUS_KM,
            "timeout_sec": ASSIGN_TIMEOUT_S,
        }
        bodies.append(orjson.dumps(body))
    return bodies


async def figure_assign(procs: Processes, svc: Services, redis_url: str) -> Figure:
    """Open loop at ASSIGN_RATE against one API process; the server's own `latency_ms` and the
    client's latency, then the audit."""
    total = int(ASSIGN_RATE * (ASSIGN_DURATION_S + WARMUP_S)) + 1
    bodies = assign_bodies(total)
    server_ms: list[float] = []
    drivers: list[str] = []
    unreadable = 0
    headers = json_auth_headers()  # the merchant's back end; ADMIN may act for anyone

    def make(i: int) -> RequestSpec:
        return ("POST", "/v1/delivery/assign", bodies[i], headers)

    def seen(_i: int, status: int, body: bytes) -> None:
        nonlocal unreadable
        if status != 200:
            return
        try:
            answer = orjson.loads(body)
            server_ms.append(float(answer["latency_ms"]))
            drivers.append(str(answer["driver"]["id"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            unreadable += 1

    after = await last_event_id(svc.redis)
    api = await start_api(procs, "api-assign", rideflow_env(redis_url))
    try:
        result = await run_load(
            HOST,
            api.port,
            make,
            mode="open",
            rate=ASSIGN_RATE,
            connections=ASSIGN_CONNECTIONS,
            duration_s=ASSIGN_DURATION_S,
            warmup_s=WARMUP_S,
            max_requests=total,
            on_response=seen,
        )
    finally:
        procs.stop(api)
    breaches = await audit_city(svc.redis)
    cancelled = await cancel_live(svc)
    replayed = await replay(svc.redis, after)
    server = latency_summary(server_ms)
    statuses = {str(k): v for k, v in sorted(result.status_counts.items())}
    say(f"  latency_ms {server}; client p50 {result.p50_ms:.2f} p99 {result.p99_ms:.2f} ms")
    say(f"  statuses {statuses}; audit {audit_text(breaches)}; cancelled {cancelled:,} after")
    say(f"  events replayed: {replayed.read:,}, {verdict_text(replayed)}")
    raw = {
        "load": result.as_dict(),
        "server_latency_ms": server,
        "statuses": statuses,
        "unreadable_bodies": unreadable,
        "repeated_drivers": len(drivers) - len(set(drivers)),
        "double_offers": len(replayed.violations),
        "inconsistent_events": len(replayed.inconsistencies),
        "replay": verdict_text(replayed),
        "audit": breaches[:20],
        "audit_breaches": len(breaches),
        "cancelled_after": cancelled,
    }
    figure = assign_figure(raw, result.sent, result.dropped)
    figure.samples["5. POST /v1/delivery/assign (latency_ms)"] = list(server_ms)
    return figure


def assign_figure(raw: dict[str, Any], sent: int, dropped: int) -> Figure:
    """Cells of figure 5: latencies count only if every request got a readable 200."""
    server, load = raw["server_latency_ms"], raw["load"]
    ok = raw["statuses"].get("200", 0)
    clean = (
        ok == sent
        and dropped == 0
        and raw["unreadable_bodies"] == 0
        and raw["audit_breaches"] == 0
        and raw["repeated_drivers"] == 0
        and raw["double_offers"] == 0
        and raw["inconsistent_events"] == 0
    )
    figure = Figure(raw=raw)
    figure.cells["assign_p50"] = (
        f"p50 {server['p50_ms']:.2f} ms (`latency_ms`, n {int(server['n']):,})",
        clean and server["p50_ms"] <= 3,
    )
    figure.cells["assign_p99"] = (
        f"p99 {server['p99_ms']:.2f} ms (p90 {server['p90_ms']:.2f}, max {server['max_ms']:.1f})",
        clean and server["p99_ms"] <= 10,
    )
    others = {s: n for s, n in raw["statuses"].items() if s != "200"}
    extra = [f"{n} {s}" for s, n in others.items()]
    if load["errors"] or load["timeouts"] or dropped:
        extra.append(f"{load['errors']} errors, {load['timeouts']} timeouts, {dropped} unsent")
    listed = f" ({', '.join(extra)})" if extra else ""
    figure.cells["assign_all"] = (
        f"{ok:,} of {sent:,} 200{listed}; drivers offered"
        f" twice: {raw['repeated_drivers']}; events: {raw['replay']};"
        f" `rideflow audit`: {audit_text(raw['audit'])}",
        clean,
    )
    figure.cells["assign_client"] = (
        f"p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.2f}, max {load['max_ms']:.1f}"
        f" ({load['throughput']:,.0f} req/s done)",
        None,
    )
    return figure


def assign_note() -> str:
    """How figure 5 is measured."""
    return (
        f"5. **`POST /v1/delivery/assign`.** On the {DRIVERS:,} drivers of figure 2 (its rides"
        f" cancelled, so every driver is free), one `rideflow api` process (rate limiting off)"
        f" gets assignment requests open loop at {ASSIGN_RATE:,.0f} req/s, {ASSIGN_CONNECTIONS}"
        f" connections, {WARMUP_S:g} s warmup + {ASSIGN_DURATION_S:g} s, each with its own"
        f" `order_id`, `restaurant_id` RST_1, a location uniform over the fleet's"
        f" {SQUARE_KM:g} km square, strategy nearest, `radius_km` {ASSIGN_RADIUS_KM},"
        f" `timeout_sec` {ASSIGN_TIMEOUT_S}. The verdicts are on the response's own"
        " `latency_ms` (the server's time from the route's start to the answer, HTTP parsing"
        " and queueing before the route excluded); the client's latency, from each request's"
        " scheduled send time, is given for information. Every request must answer a readable"
        " 200, no driver may be offered two orders, and `rideflow audit` must be clean after the"
        " API has stopped; then every delivery is cancelled, which frees its driver."
    )


# ---------------------------------------------------------------------------------------------
# 6. reject -> next driver offered


@dataclass(slots=True)
class OfferWatch:
    """Tails the city event stream and hands every OFFERED event to its order's queue."""

    redis: Redis
    after: str
    offered: dict[str, asyncio.Queue[tuple[str, str]]] = field(default_factory=dict)

    def queue(self, order_id: str) -> asyncio.Queue[tuple[str, str]]:
        """The (driver, offer id) pairs offered for this order, in order."""
        return self.offered.setdefault(order_id, asyncio.Queue())

    async def run(self) -> None:
        """Read until cancelled."""
        stream = keys.city_events(CITY)
        while True:
            reply = await self.redis.xread({stream: self.after}, count=EVENT_BATCH, block=100)
            for _stream, entries in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply):
                for entry_id, event in entries:
                    self.after = entry_id
                    if event.get("status") == "OFFERED":
                        self.queue(event["order"]).put_nowait((event["driver"], event["offer"]))


async def reject_one(
    client: httpx.AsyncClient, watch: OfferWatch, body: dict[str, Any], outcome: Counter[str]
) -> str | None:
    """One ride through HTTP: create it, the driver offered reads the offer and rejects it, and
    once the next driver is offered the rider cancels, each with their own token. Returns the
    ride id."""
    rider = auth_headers(Role.CUSTOMER, body["rider_id"])
    r = await client.post("/v1/rides", json=body, headers=rider)
    if r.status_code != 202:
        outcome[f"create {r.status_code}"] += 1
        return None
    ride_id = str(r.json()["ride_id"])
    offers = watch.queue(ride_id)
    try:
        driver, offer_id = await asyncio.wait_for(offers.get(), OFFER_WAIT_S)
    except TimeoutError:
        outcome["never offered"] += 1
        return ride_id
    as_driver = auth_headers(Role.DRIVER, driver)
    r = await client.get(f"/v1/drivers/{driver}/offers", headers=as_driver)
    pending = [o for o in r.json().get("offers", []) if o["offer_id"] == offer_id]
    if r.status_code != 200 or not pending:
        outcome["offer not pending"] += 1
        return ride_id
    answer = {"driver_id": driver, "token": pending[0]["token"]}
    r = await client.post(f"/v1/offers/{offer_id}/reject", json=answer, headers=as_driver)
    if r.status_code != 200 or r.json()["status"] != "REJECTED":
        outcome[f"reject {r.status_code}"] += 1
        return ride_id
    try:
        await asyncio.wait_for(offers.get(), OFFER_WAIT_S)
    except TimeoutError:
        outcome["not offered again"] += 1
        return ride_id
    r = await client.post(f"/v1/rides/{ride_id}/cancel", headers=rider)
    outcome["done" if r.status_code == 200 else f"cancel {r.status_code}"] += 1
    return ride_id


async def reject_gaps(redis: Redis, ride_ids: list[str]) -> tuple[list[float], int]:
    """Per ride, the rejection's SEARCHING `at` to the next OFFERED `at`, in ms, from the ride's
    own event stream; and how many rides had a rejection with no offer after it."""
    pipe = redis.pipeline(transaction=False)
    for ride_id in ride_ids:
        pipe.xrange(keys.order_events(CITY, ride_id))
    streams = cast(list[list[tuple[str, dict[str, str]]]], await pipe.execute())
    gaps: list[float] = []
    missing = 0
    for events in streams:
        rejected_at = None
        for _id, event in events:
            if event["status"] == "SEARCHING" and freed_by(event) == "rejected":
                rejected_at = int(event["at"])
            elif event["status"] == "OFFERED" and rejected_at is not None:
                gaps.append((int(event["at"]) - rejected_at) / 1000)
                break
        else:
            missing += rejected_at is not None
    return gaps, missing


async def figure_reject_next(procs: Processes, svc: Services, redis_url: str) -> Figure:
    """Real API and dispatcher; every first offer rejected over HTTP by its driver; the time to
    the next offer from the ride's own events."""
    rng = random.Random(SEED + 6)
    bodies = []
    for i in range(REJECT_RIDES):
        (plat, plng), (dlat, dlng) = point_in_square(rng, SQUARE_KM), point_in_disc(rng, 10)
        bodies.append(
            {
                "rider_id": f"rider-r{i}",
                "pickup": {"lat": plat, "lng": plng},
                "dropoff": {"lat": dlat, "lng": dlng},
            }
        )
    api = await start_api(procs, "api-reject", rideflow_env(redis_url))
    dispatcher = await start_dispatcher(procs, redis_url, svc.redis, name="dispatcher-reject")
    after = await last_event_id(svc.redis)
    watch = OfferWatch(svc.redis, after)
    watcher = asyncio.create_task(watch.run())
    outcome: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=REJECT_CONNECTIONS)
    loop = asyncio.get_running_loop()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://{HOST}:{api.port}", timeout=10, limits=limits
        ) as client:
            start = loop.time() + 0.05
            tasks = []
            for i, body in enumerate(bodies):
                delay = start + i / REJECT_RATE - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(reject_one(client, watch, body, outcome)))
            ride_ids = [r for r in await asyncio.gather(*tasks) if r is not None]
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        procs.stop(api)
        procs.stop(dispatcher)
    gaps, missing = await reject_gaps(svc.redis, ride_ids)
    cancelled = await cancel_live(svc)
    breaches = await audit_city(svc.redis)
    replayed = await replay(svc.redis, after)
    summary = latency_summary(gaps)
    say(f"  reject -> next OFFERED {summary}; outcomes {dict(outcome)}")
    say(f"  audit {audit_text(breaches)}; events replayed {replayed.read:,}")
    say(f"  {verdict_text(replayed)}")
    clean = not breaches and not replayed.violations and not replayed.inconsistencies
    raw = {
        "reject_to_offered": summary,
        "outcomes": dict(outcome),
        "rejected_not_offered_again": missing,
        "cancelled_after": cancelled,
        "audit": breaches[:20],
        "audit_breaches": len(breaches),
        "double_offers": len(replayed.violations),
        "inconsistent_events": len(replayed.inconsistencies),
        "replay": verdict_text(replayed),
    }
    figure = Figure(raw=raw)
    figure.samples["6. reject -> next OFFERED (Redis time)"] = list(gaps)
    complete = outcome["done"] == REJECT_RIDES and len(gaps) == REJECT_RIDES
    others = {k: v for k, v in outcome.items() if k != "done"}
    figure.cells["reject_p99"] = (
        f"p99 {summary['p99_ms']:.1f} ms (p50 {summary['p50_ms']:.1f}, max"
        f" {summary['max_ms']:.1f}; {len(gaps):,} of {REJECT_RIDES:,} rides"
        f"{f'; {others}' if others else ''}); events: {verdict_text(replayed)};"
        f" `rideflow audit`: {audit_text(breaches)}",
        complete and clean and summary["p99_ms"] <= 500,
    )
    return figure


def reject_note() -> str:
    """How figure 6 is measured."""
    return (
        f"6. **reject -> next driver offered.** On the same fleet, one `rideflow api` and one"
        f" `rideflow dispatcher --concurrency {DISPATCH_CONCURRENCY}` process (default offer"
        f" window). {REJECT_RIDES:,} rides are created over HTTP open loop at"
        f" {REJECT_RATE:g}/s, pickups uniform over the square. This process tails the city"
        " event stream (`XREAD`); when a ride's first OFFERED event shows, its driver reads the"
        " offer (`GET /v1/drivers/{id}/offers`, for the fencing token) and rejects it (`POST"
        " /v1/offers/{id}/reject`); when the next OFFERED event shows, the rider cancels. The"
        " figure is, per ride, the `at` of the SEARCHING event the rejection wrote minus the"
        " `at` of the next OFFERED event, both Redis `TIME` stamps from the ride's own event"
        " stream; so it covers the re-queueing, the dispatcher's `XREADGROUP`, its search and"
        " the offer, and none of the client's HTTP. The audit runs after both processes stop."
    )


# ---------------------------------------------------------------------------------------------
# 7. offer lapse lateness


@dataclass(slots=True)
class Kill:
    """A dispatcher killed -9 and its replacement: Redis-clock ms of the kill and of the
    replacement reading its stream."""

    at_ms: int
    ready_ms: int

    def covers(self, deadline_ms: int) -> bool:
        """Whether an offer due then may have waited on the restart."""
        return self.at_ms - KILL_WINDOW_BEFORE_MS <= deadline_ms <= self.ready_ms + 100


async def kill_and_replace(
    procs: Processes, svc: Services, redis_url: str, victim: Server, name: str
) -> tuple[Server, Kill]:
    """kill -9 a dispatcher, start a replacement at once; when the replacement is reading."""
    procs.kill9(victim)
    killed_at = await redis_now_us(svc.redis)
    replacement = await lapse_dispatcher(procs, svc, redis_url, name)
    ready_at = await redis_now_us(svc.redis)
    say(f"  killed {victim.name} -9; {name} up {(ready_at - killed_at) / 1e6:.2f} s later")
    return replacement, Kill(killed_at // 1000, ready_at // 1000)


async def lapse_dispatcher(procs: Processes, svc: Services, redis_url: str, name: str) -> Server:
    """A dispatcher that never takes a driver offline for lapsing."""
    return await start_dispatcher(
        procs, redis_url, svc.redis, name=name, settings={"max_lapses": str(LAPSE_MAX_LAPSES)}
    )


async def create_lapsing_rides(orders: Orders) -> None:
    """LAPSE_RIDES rides at LAPSE_RATE/s, pickups uniform over the square."""
    rng = random.Random(SEED + 7)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(LAPSE_RIDES):
        delay = start + i / LAPSE_RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        (plat, plng), (dlat, dlng) = point_in_square(rng, SQUARE_KM), point_in_disc(rng, 10)
        pickup, dropoff = Point(lat=plat, lng=plng), Point(lat=dlat, lng=dlng)
        await orders.create_ride(RideCreate(rider_id=f"rider-l{i}", pickup=pickup, dropoff=dropoff))


async def lapses_since(redis: Redis, after: str) -> list[tuple[str, int, float]]:
    """(order, offer deadline ms, lateness ms) of every lapse after event id `after`: the `at`
    of the SEARCHING event the lapse wrote minus the deadline in the offer's hash."""
    lapsed = [
        (event["order"], event["offer"], int(event["at"]))
        for _id, event in await city_events_after(redis, after)
        if event.get("status") == "SEARCHING" and freed_by(event) == "lapsed"
    ]
    pipe = redis.pipeline(transaction=False)
    for _order, offer_id, _at in lapsed:
        pipe.hget(keys.offer(CITY, offer_id), "deadline")
    deadlines = await pipe.execute()
    return [
        (order, int(deadline), at / 1000 - int(deadline))
        for (order, _offer, at), deadline in zip(lapsed, deadlines, strict=True)
        if deadline is not None
    ]


async def figure_lapse(procs: Processes, svc: Services, redis_url: str) -> Figure:
    """Rides whose offers nobody answers, so every offer lapses; one dispatcher killed -9 and
    replaced, then two with one of them killed -9 and replaced."""
    settings = svc.settings.model_copy(update={"ride_offer_window_s": LAPSE_WINDOW_S})
    orders = build_services(settings, svc.redis).orders
    after = await last_event_id(svc.redis)
    loop = asyncio.get_running_loop()
    first = await lapse_dispatcher(procs, svc, redis_url, "dispatcher-lapse-1")
    start = loop.time()
    running: list[Server] = [first]

    async def until(at_s: float) -> None:
        await asyncio.sleep(max(0.0, start + at_s - loop.time()))

    try:
        creating = asyncio.create_task(create_lapsing_rides(orders))
        await until(LAPSE_KILL_AT_S)
        second, kill1 = await kill_and_replace(procs, svc, redis_url, first, "dispatcher-lapse-2")
        running = [second]
        await creating
        await until(LAPSE_SECOND_AT_S)
        running.append(await lapse_dispatcher(procs, svc, redis_url, "dispatcher-lapse-3"))
        both_from_ms = await redis_now_us(svc.redis) // 1000
        await until(LAPSE_KILL2_AT_S)
        fourth, kill2 = await kill_and_replace(procs, svc, redis_url, second, "dispatcher-lapse-4")
        running = [running[1], fourth]
        await until(LAPSE_END_S)
    finally:
        for server in running:
            procs.stop(server)
    lapses = await lapses_since(svc.redis, after)
    cancelled = await cancel_live(svc)
    breaches = await audit_city(svc.redis)
    replayed = await replay(svc.redis, after)
    raw = lapse_raw(lapses, kill1, kill2, both_from_ms)
    raw |= {
        "cancelled_after": cancelled,
        "audit": breaches[:20],
        "audit_breaches": len(breaches),
        "double_offers": len(replayed.violations),
        "inconsistent_events": len(replayed.inconsistencies),
        "replay": verdict_text(replayed),
        "rides_seen": replayed.statuses["QUEUED"],
    }
    say(f"  one dispatcher {raw['one_dispatcher']}; two {raw['two_dispatchers']}")
    say(f"  away from kills {raw['away_from_kills']}; audit {audit_text(breaches)}")
    say(f"  events replayed {replayed.read:,} ({raw['rides_seen']} rides): {raw['replay']}")
    say(
        f"  {raw['rides_lapsed']} rides lapsed, at most {raw['most_lapses_of_a_ride']} times;"
        f" shortest gap between a ride's deadlines {raw['shortest_deadline_gap_ms']} ms"
    )
    return lapse_figure(raw)


def lapse_raw(
    lapses: list[tuple[str, int, float]], kill1: Kill, kill2: Kill, both_from_ms: int
) -> dict[str, Any]:
    """Lateness summaries: with one dispatcher, with two, and away from either kill; and how
    often each ride lapsed (at most once a window)."""
    one = [late for _o, due, late in lapses if due < both_from_ms]
    two = [late for _o, due, late in lapses if due >= both_from_ms]
    away = [late for _o, due, late in lapses if not (kill1.covers(due) or kill2.covers(due))]
    near1 = [late for _o, due, late in lapses if kill1.covers(due)]
    # While the sole dispatcher is dead nothing sweeps: those lapses are measured from the moment
    # its replacement reads its stream, the rest (a dispatcher running) against the target.
    dead = [(due, late) for _o, due, late in lapses if kill1.at_ms <= due < kill1.ready_ms]
    alive = [late for _o, due, late in lapses if not kill1.at_ms <= due < kill1.ready_ms]
    after_restart = [float(due + late - kill1.ready_ms) for due, late in dead]
    per_order: dict[str, list[int]] = {}
    for order, due, _late in lapses:
        per_order.setdefault(order, []).append(due)
    cycles = [b - a for dues in per_order.values() for a, b in itertools.pairwise(sorted(dues))]
    return {
        "lapses": len(lapses),
        "rides_lapsed": len(per_order),
        "most_lapses_of_a_ride": max((len(d) for d in per_order.values()), default=0),
        "shortest_deadline_gap_ms": min(cycles, default=0),
        "one_dispatcher": latency_summary(one),
        "two_dispatchers": latency_summary(two),
        "away_from_kills": latency_summary(away),
        "near_first_kill": latency_summary(near1),
        "alive": latency_summary(alive),
        "late_alive": sum(late > LAPSE_TARGET_MS for late in alive),
        "after_restart": latency_summary(after_restart),
        "late_one": sum(late > LAPSE_TARGET_MS for late in one),
        "late_two": sum(late > LAPSE_TARGET_MS for late in two),
        "kills": [
            {"at_ms": k.at_ms, "replacement_reading_after_ms": k.ready_ms - k.at_ms}
            for k in (kill1, kill2)
        ],
        "early": sum(late < 0 for _o, _due, late in lapses),
    }


def lapse_figure(raw: dict[str, Any]) -> Figure:
    """Cells of figure 7: the verdict is on the default set-up (`rideflow up` runs two
    dispatchers), every lapse due once two ran, the kill of one of them included; the sole
    dispatcher's kill is information, as are lapses due while no dispatcher ran (measured from
    the replacement's start)."""
    alive, two, dead = raw["alive"], raw["two_dispatchers"], raw["after_restart"]
    restart = raw["kills"][0]["replacement_reading_after_ms"]
    clean = (
        raw["audit_breaches"] == 0
        and raw["double_offers"] == 0
        and raw["inconsistent_events"] == 0
        and raw["early"] == 0
        and two["n"] >= 100
    )
    figure = Figure(raw=raw)
    figure.cells["lapse_two"] = (
        f"max {two['max_ms']:.0f} ms (p50 {two['p50_ms']:.0f}, p99 {two['p99_ms']:.0f};"
        f" {int(two['n']):,} lapses, {raw['late_two']} over {LAPSE_TARGET_MS:g} ms);"
        f" events: {raw['replay']}; `rideflow audit`: {audit_text(raw['audit'])}",
        clean and two["max_ms"] <= LAPSE_TARGET_MS,
    )
    figure.cells["lapse_one"] = (
        f"max {alive['max_ms']:.0f} ms (p50 {alive['p50_ms']:.0f}, p99 {alive['p99_ms']:.0f};"
        f" {int(alive['n']):,} lapses, {raw['late_alive']} over {LAPSE_TARGET_MS:g} ms)",
        None,
    )
    figure.cells["lapse_away"] = (
        f"{int(dead['n']):,} lapses fell due in the {restart:,} ms between the kill and the"
        f" replacement reading its stream; they lapsed at most {dead['max_ms']:.0f} ms after"
        f" it did (p50 {dead['p50_ms']:.0f})",
        None,
    )
    return figure


def lapse_note() -> str:
    """How figure 7 is measured."""
    return (
        f"7. **Offer lapse lateness.** On the same fleet, {LAPSE_RIDES} rides are created in"
        f" this process at {LAPSE_RATE:g}/s with a {LAPSE_WINDOW_S:g} s offer window"
        f" (`ride_offer_window_s`), and nobody answers: every offer lapses, the ride goes back"
        " to SEARCHING and is offered to the next driver, about once a second per ride. The"
        f" dispatchers run with `RIDEFLOW_MAX_LAPSES={LAPSE_MAX_LAPSES}` so that no driver goes"
        f" offline for lapsing. One dispatcher runs; at {LAPSE_KILL_AT_S:g} s it is killed with"
        " SIGKILL and a replacement is started at once; at"
        f" {LAPSE_SECOND_AT_S:g} s a second dispatcher joins; at {LAPSE_KILL2_AT_S:g} s one of"
        f" the two is killed -9 and replaced at once; at {LAPSE_END_S:g} s all stop and every"
        " ride is cancelled. Lateness is the `at` of the SEARCHING event a lapse wrote (Redis"
        " `TIME`) minus the offer's `deadline` (ms, set by `offer_create` from Redis `TIME`),"
        " for every lapse in the city event stream. The verdict is on the default set-up"
        " (`rideflow up` runs two dispatchers): every lapse due once two ran, throughout the"
        " kill of one of them. The sole dispatcher's phase is information: every lapse due"
        " while it ran, before and after its kill. Lapses due while no dispatcher ran at all"
        " (between the sole one's kill and its replacement reading its stream, which is Python"
        " start-up) cannot lapse before a dispatcher exists; for them a row gives how soon"
        " after the replacement started they lapsed. A sweeper"
        f" claims due offers by pushing them {SWEEP_LEASE_MS:,} ms ahead (`SWEEP_LEASE_MS`), so"
        " an offer claimed by a dispatcher that is killed before it lets it lapse waits that"
        " long for another sweeper."
    )
