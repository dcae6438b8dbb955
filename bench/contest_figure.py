"""Figure 8: a million contested reservation attempts, workers and dispatchers killed -9 all along,
and not one double assignment.

On a throwaway Redis of its own: CONTEST_DRIVERS drivers around one point, CONTEST_WORKERS
`python -m bench.contest` processes (many tasks each, every one creating rides and dispatching them
at once, then accepting, rejecting, ignoring, answering late...), and CONTEST_DISPATCHERS real
`rideflow dispatcher` processes that re-dispatch rejected and lapsed rides and sweep deadlines.
Every KILL_EVERY_S one worker and one dispatcher get SIGKILL and are replaced at once.

This process verifies: it reads the city event stream from its first entry, in big batches, and
keeps who holds what. A violation is an OFFERED event naming a driver who still holds another
order (or this one), or an order that still has a driver. A driver holds an order from its
OFFERED event until an event of that order with status SEARCHING (rejected or lapsed), CANCELLED,
COMPLETED or DELIVERED. The stream is capped (MAXLEN ~100,000): a gap, entries trimmed before
they were read, makes the run invalid, and it is detected exactly from `XINFO STREAM`
(entries-added - entries read > length means unread entries were trimmed).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis

from bench.contest import COUNTS_KEY, ONCE_SHARE
from bench.harness import (
    CITY,
    CORES,
    SEED,
    Figure,
    Processes,
    Server,
    SetupError,
    audit_city,
    cancel_live,
    point_in_square,
    redis_now_us,
    redis_url_of,
    rideflow_env,
    say,
    services,
    start_dispatcher,
    start_redis,
)
from bench.verify import READ_COUNT, Verifier, stream_counts
from rideflow.drivers.schemas import DriverCreate, DriverLocation
from rideflow.errors import RideflowError
from rideflow.redis import keys
from rideflow.services import Services as Svc

TARGET_ATTEMPTS = 1_000_000
LIMIT_S = 900.0  # the run stops here even short of the attempts, and says so
CONTEST_DRIVERS = 50
CONTEST_WORKERS = 3
WORKER_TASKS = 40
CONTEST_DISPATCHERS = 2
DISPATCHER_CONCURRENCY = 16
KILL_EVERY_S = 15.0
JANITOR_AFTER_S = 3.0  # an accepted ride untouched this long lost its worker: the rider cancels
SETTINGS = {
    "ride_offer_window_s": "0.5",
    "ride_deadline_s": "5",
    "max_lapses": "1000000000",
    "driver_stale_s": "7200",
    "claim_idle_ms": "2000",
    "retry_lease_ms": "2000",
    "retry_base_s": "0.2",
    "retry_max_s": "1.0",
    # Finished orders expire after 2 minutes (the audit skips one that expires while it reads).
    "order_retention_s": "120",
}


@dataclass(slots=True)
class Crew:
    """The worker and dispatcher processes of the contest, and how many were killed."""

    procs: Processes
    url: str
    redis: Redis
    workers: list[Server] = field(default_factory=list)
    dispatchers: list[Server] = field(default_factory=list)
    started: int = 0
    kills: Counter[str] = field(default_factory=Counter)

    def env(self) -> dict[str, str]:
        return rideflow_env(self.url, extra=SETTINGS)

    def start_worker(self) -> None:
        self.started += 1
        argv = [sys.executable, "-m", "bench.contest", "--tasks", str(WORKER_TASKS)]
        argv += ["--seed", str(self.started)]
        self.workers.append(self.procs.start(f"contest-worker-{self.started}", argv, self.env()))

    async def start_dispatcher(self, wait: bool) -> None:
        self.started += 1
        server = await start_dispatcher(
            self.procs,
            self.url,
            self.redis,
            name=f"contest-dispatcher-{self.started}",
            concurrency=DISPATCHER_CONCURRENCY,
            wait=wait,
            settings=SETTINGS,
        )
        self.dispatchers.append(server)

    async def kill_one_of_each(self, turn: int) -> None:
        """SIGKILL one worker and one dispatcher (in turn), and start their replacements."""
        for group, kind in ((self.workers, "workers"), (self.dispatchers, "dispatchers")):
            victim = group.pop(turn % len(group))
            self.procs.kill9(victim)
            self.kills[kind] += 1
        self.start_worker()
        await self.start_dispatcher(wait=False)

    def check_alive(self) -> None:
        """A worker or dispatcher that exited by itself fails the figure (not the whole run)."""
        try:
            for server in self.workers + self.dispatchers:
                server.check_alive()
        except SetupError as exc:
            raise RuntimeError(str(exc)) from None

    def stop(self) -> None:
        """SIGTERM: workers flush their counts, dispatchers finish what they hold."""
        for server in self.workers + self.dispatchers:
            self.procs.stop(server)
        self.workers, self.dispatchers = [], []


async def seed_contest_drivers(svc: Svc) -> None:
    """CONTEST_DRIVERS drivers in a 600 m square around the centre, online."""
    ids = [f"cd{i:03d}" for i in range(CONTEST_DRIVERS)]
    for driver in ids:
        await svc.drivers.create(DriverCreate(id=driver, name=f"Driver {driver}", rating=4.5))
    rng = random.Random(SEED + 8)
    places = [point_in_square(rng, 0.6) for _ in ids]
    done = await svc.drivers.record(
        [DriverLocation(driver_id=d, lat=p[0], lng=p[1]) for d, p in zip(ids, places, strict=True)]
    )
    if done.rejected:
        raise SetupError(f"contest drivers refused: {done.rejected[0]}")
    for driver in ids:
        await svc.drivers.set_status(driver, "online")
    if await svc.redis.zcard(keys.pool(CITY)) != CONTEST_DRIVERS:
        raise SetupError("the contest drivers are not all in the pool")


async def janitor(svc: Svc, verifier: Verifier, cancelled: Counter[str]) -> None:
    """Riders cancel accepted rides nobody moved for JANITOR_AFTER_S: their worker was killed."""
    while True:
        await asyncio.sleep(1.0)
        now = await redis_now_us(svc.redis)
        stale = [o for o, at in verifier.taken_at.items() if now - at > JANITOR_AFTER_S * 1e6]
        for order in stale:
            try:
                await svc.orders.step(order, "ride", "cancel")
                cancelled["orphans"] += 1
            except RideflowError:
                cancelled["orphans_refused"] += 1


async def attempts_so_far(redis: Redis) -> int:
    """Reservation attempts the workers have reported."""
    return int(await redis.hget(COUNTS_KEY, "attempts") or 0)


async def play(crew: Crew, svc: Svc, verifier: Verifier) -> dict[str, Any]:
    """Run until the attempts are made or the time limit; kill and replace all along."""
    for _ in range(CONTEST_DISPATCHERS):
        await crew.start_dispatcher(wait=True)
    for _ in range(CONTEST_WORKERS):
        crew.start_worker()
    cancelled: Counter[str] = Counter()
    sweeper = asyncio.create_task(janitor(svc, verifier, cancelled))
    loop = asyncio.get_running_loop()
    start = loop.time()
    next_kill, next_check, next_say, turn = start + KILL_EVERY_S, start, start, 0
    attempts = 0
    try:
        while True:
            await verifier.read_some()
            now = loop.time()
            if now >= next_check:
                next_check = now + 1.0
                crew.check_alive()
                attempts = await attempts_so_far(svc.redis)
                if await verifier.check_gap():
                    say(f"  gap: {verifier.gap}")
                    break
                if attempts >= TARGET_ATTEMPTS or now - start >= LIMIT_S:
                    break
            if now >= next_kill:
                next_kill = now + KILL_EVERY_S
                await crew.kill_one_of_each(turn)
                turn += 1
            if now >= next_say:
                next_say = now + 30.0
                say(
                    f"  {now - start:5.0f} s: {attempts:,} attempts, {verifier.read:,} events,"
                    f" {len(verifier.violations)} violations, kills {dict(crew.kills)}"
                )
    finally:
        crew.stop()
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
    return {"duration_s": round(loop.time() - start, 1), "janitor": dict(cancelled)}


async def figure_contest(procs: Processes, tmp: Path) -> Figure:
    """The contest on its own Redis, then the checks."""
    redis_server = start_redis(procs, tmp, name="redis-contest")
    url = redis_url_of(redis_server)
    overrides = {name: value for name, value in SETTINGS.items()}
    try:
        async with services(url, **overrides) as svc:
            await seed_contest_drivers(svc)
            verifier = Verifier(svc.redis)
            crew = Crew(procs, url, svc.redis)
            started = time.perf_counter()
            played = await play(crew, svc, verifier)
            await verifier.drain()
            cancelled = await cancel_live(svc)
            await verifier.drain()
            await verifier.check_gap()
            added, _length = await stream_counts(svc.redis)
            breaches = await audit_city(svc.redis)
            memory = await svc.redis.info("memory")
            counts = {
                k: int(v)
                for k, v in cast(dict[str, str], await svc.redis.hgetall(COUNTS_KEY)).items()
            }
            raw = {
                **played,
                "total_s": round(time.perf_counter() - started, 1),
                "counts": counts,
                "events_read": verifier.read,
                "events_added": added,
                "statuses": dict(verifier.statuses),
                "freed_by": dict(verifier.reasons),
                "violations": len(verifier.violations),
                "violation_examples": verifier.violations[:20],
                "inconsistencies": len(verifier.inconsistencies),
                "inconsistency_examples": verifier.inconsistencies[:20],
                "gap": verifier.gap,
                "kills": dict(crew.kills),
                "processes_started": crew.started,
                "cancelled_after": cancelled,
                "audit": breaches[:20],
                "audit_breaches": len(breaches),
                "still_held_after": len(verifier.order_driver),
                "redis_used_memory_peak": memory.get("used_memory_peak_human"),
            }
    finally:
        procs.stop(redis_server)
    say(f"  {raw['counts']}; kills {raw['kills']}; violations {raw['violations']}")
    say(f"  events read {raw['events_read']:,} of {raw['events_added']:,}; audit {len(breaches)}")
    return contest_figure(raw)


def contest_figure(raw: dict[str, Any]) -> Figure:
    """Cells of figure 8."""
    counts = raw["counts"]
    attempts = counts.get("attempts", 0)
    complete = attempts >= TARGET_ATTEMPTS
    kills = raw["kills"]
    invalid = raw["gap"] or raw["events_read"] != raw["events_added"]
    statuses = raw["statuses"]
    freed = raw["freed_by"]
    cut = "" if complete else f"; stopped by the {LIMIT_S:g} s limit short of {TARGET_ATTEMPTS:,}"
    figure = Figure(raw=raw)
    figure.cells["contest_double"] = (
        f"{raw['violations']} violations, {raw['inconsistencies']} inconsistent events over"
        f" {raw['events_read']:,} events ({'INVALID: ' + raw['gap'] if raw['gap'] else 'no gap'});"
        f" `rideflow audit`: {'clean' if not raw['audit_breaches'] else raw['audit'][0]}",
        not invalid
        and raw["violations"] == 0
        and counts.get("fence_breaches", 0) == 0
        and raw["inconsistencies"] == 0
        and raw["audit_breaches"] == 0
        and complete,
    )
    figure.cells["contest_attempts"] = (
        f"{attempts:,} attempts ({counts.get('offered', 0):,} offered,"
        f" {counts.get('none', 0):,} none eligible, {counts.get('late', 0):,} past deadline,"
        f" {counts.get('not_searching', 0):,} no longer searching) in {raw['duration_s']:,.0f} s"
        f"{cut}; killed -9: {kills.get('workers', 0)} workers, {kills.get('dispatchers', 0)}"
        " dispatchers",
        complete and kills.get("workers", 0) > 0 and kills.get("dispatchers", 0) > 0,
    )
    figure.cells["contest_flow"] = (
        f"{statuses.get('OFFERED', 0):,} offers made (workers and dispatchers),"
        f" {statuses.get('ACCEPTED', 0):,} accepted, {freed.get('rejected', 0):,} rejected,"
        f" {freed.get('lapsed', 0):,} lapsed, {statuses.get('COMPLETED', 0):,} completed,"
        f" {statuses.get('CANCELLED', 0):,} cancelled, {statuses.get('NO_DRIVER_FOUND', 0):,}"
        f" no driver found; {counts.get('fence_breaches', 0)} wrong-token or wrong-driver"
        " answers accepted",
        None,
    )
    return figure


def contest_note() -> str:
    """How figure 8 is measured."""
    settings = ", ".join(f"`{k}` {v}" for k, v in SETTINGS.items())
    return (
        f"8. **Contested reservations.** A throwaway Redis of its own; {CONTEST_DRIVERS} drivers"
        " online in a 600 m square around one point. "
        f"{CONTEST_WORKERS} worker processes (`python -m bench.contest`, {WORKER_TASKS} asyncio"
        " tasks each) loop: create a ride directly (`Orders.enqueue(..., direct=True)`, pickup"
        " within about 220 m of the point), dispatch it at once with `Dispatcher.handle`"
        f" ({100 * ONCE_SHARE:.0f} % with `once=True`; the rest, when nobody is free, is left"
        " to the dispatchers' retries and cancelled 0.05 to 0.4 s later), then, when a driver"
        " was offered it, at random: accept it and drive it to COMPLETED (or cancel it), reject"
        " it and cancel it 0 to 0.3 s later (racing its next offer), ignore it (it lapses, is"
        " offered again, and is cancelled 0.6 to 1.4 windows later), accept it around its"
        " deadline (racing the sweeper), or first answer with a stale token and as a stranger"
        " (both must be refused) and then accept. Every `offer_create` call a worker makes,"
        " through `Dispatcher.handle`, which searches and reserves again for each wider radius,"
        " is one attempt, counted by its reply (offered, none eligible: every candidate"
        " found had been taken, past the deadline, no longer searching); the dispatchers'"
        " own attempts are not counted. "
        f"{CONTEST_DISPATCHERS} `rideflow dispatcher --concurrency {DISPATCHER_CONCURRENCY}`"
        " processes re-dispatch rejected and lapsed rides, retry searching ones and sweep"
        f" deadlines. Settings of every process: {settings}. Every {KILL_EVERY_S:g} s one worker"
        " and one dispatcher (in turn) get SIGKILL and replacements start at once; this"
        f" process cancels accepted rides left untouched {JANITOR_AFTER_S:g} s (their worker"
        " was killed). Meanwhile it reads the city event stream from its first entry in"
        f" batches of up to {READ_COUNT:,} and keeps who holds what: a violation is an OFFERED"
        " event naming a driver who still holds an order, or an order that still has a driver"
        " (held from OFFERED until SEARCHING naming that driver, CANCELLED, COMPLETED or"
        " DELIVERED); an inconsistent event is any other event that disagrees with the holder"
        " map (a step by a driver who does not hold the order, say). The stream is capped at"
        " about 100,000 entries: a gap (`entries-added` - entries read > `length` in `XINFO"
        " STREAM`, checked every second) makes the run invalid. It stops at"
        f" {TARGET_ATTEMPTS:,} attempts or after {LIMIT_S:g} s; then every process is stopped"
        " (SIGTERM: workers report their last counts), live rides are cancelled, the verifier"
        " reads to the stream's end (it must have read every entry ever added) and `rideflow"
        " audit` must be clean (finished rides are kept 2 minutes; one that expires while the"
        " audit reads is skipped, not reported). A worker killed"
        " -9 loses the counts of its last half second, so attempts are if anything"
        f" under-counted. The machine has {CORES} cores for all of it."
    )
