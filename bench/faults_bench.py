"""Figure 20: Redis killed with SIGKILL under load, with `appendfsync everysec` and `always`.

For each policy, a redis-server of its own with AOF on (`bench/aof_redis.py`), one `rideflow
api`, two dispatchers, and simulated drivers in this process that accept every offer and drive
the trip to its end (`bench/order_flow.py`). Rides are posted open loop at 200/s; Redis is
SIGKILLed a few seconds in and started again on the same port from the same directory; the
posting goes on. Counted (`bench/redis_kill.py`, the same code as `tests/faults/`): orders
acknowledged (202) that are gone afterwards, the time from Redis answering again to the first
202 and to the first offer, and whether every order that survived reached a final state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.aof_redis import AofRedis, Fsync
from bench.harness import (
    Figure,
    Processes,
    auth_headers,
    bench_settings,
    free_port,
    rideflow_env,
    say,
    start_api,
    start_dispatcher,
)
from bench.order_flow import DriverCrew
from bench.redis_kill import RECOVERY_WINDOW_S, KillOutcome, kill_under_load

RATE = 200.0
ROUNDS = 2
"""Kills per policy."""
BEFORE_S, DOWN_S, AFTER_S = 4.0, 2.0, 8.0
DRIVERS = 150
DISPATCHERS = 2
CONCURRENCY = 16
POLICIES: tuple[Fsync, ...] = ("everysec", "always")
SETTINGS = {"ride_deadline_s": 60.0, "ride_offer_window_s": 5.0}
"""Orders search for a minute (a 2 s outage must not end them); an offer whose answer was lost
with Redis lapses after 5 s."""


async def one_kill(procs: Processes, tmp: Path, fsync: Fsync, round_: int) -> KillOutcome:
    """Start a stack on an AOF Redis of its own, kill Redis under load, stop everything."""
    server = AofRedis(free_port(), tmp / f"faults-{fsync}-{round_}", fsync)
    server.start()
    started = []
    try:
        env = rideflow_env(server.url, extra={k: str(v) for k, v in SETTINGS.items()})
        api = await start_api(procs, f"api-faults-{fsync}", env)
        started.append(api)
        watcher = Redis.from_url(server.url, decode_responses=True)
        try:
            for n in range(1, DISPATCHERS + 1):
                started.append(
                    await start_dispatcher(
                        procs,
                        server.url,
                        watcher,
                        name=f"dispatcher-faults-{fsync}-{n}",
                        concurrency=CONCURRENCY,
                        settings={k: str(v) for k, v in SETTINGS.items()},
                    )
                )
        finally:
            await watcher.aclose()
        crew = DriverCrew(bench_settings(server.url, **SETTINGS), DRIVERS)
        await crew.seed()
        outcome = await kill_under_load(
            server,
            api.port,
            auth_headers(),
            crew,
            rate=RATE,
            before_s=BEFORE_S,
            down_s=DOWN_S,
            after_s=AFTER_S,
        )
        for proc in started:
            proc.check_alive()  # a process that died with Redis is a result, not a set-up error
        say(f"  {outcome.line()}")
        return outcome
    finally:
        for proc in reversed(started):
            procs.stop(proc)
        server.stop()


async def figure_faults(procs: Processes, tmp: Path) -> Figure:
    runs: dict[str, list[KillOutcome]] = {fsync: [] for fsync in POLICIES}
    for round_ in range(ROUNDS):
        for fsync in POLICIES:
            runs[fsync].append(await one_kill(procs, tmp, fsync, round_))
    figure = Figure(raw={f: [o.as_dict() for o in outs] for f, outs in runs.items()})
    all_runs = [o for outs in runs.values() for o in outs]
    for policy, outs in runs.items():
        lost = sum(len(o.lost) for o in outs)
        acked = sum(o.acknowledged for o in outs)
        before = sum(o.acknowledged_before_kill for o in outs)
        healthy = all(recovered(o) for o in outs)
        text = (
            f"{lost} of {acked:,} acknowledged ({before:,} before the kills), {ROUNDS} kills at"
            f" {RATE:g} orders/s; {settled_text(outs)}"
        )
        met = healthy if policy == "everysec" else healthy and lost == 0
        figure.cells[f"faults_{policy}"] = (text, met)
    worst = max((o.recovery_s or float("inf")) for o in all_runs)
    offers = [o.dispatch_resumed_s for o in all_runs]
    worst_offer = max((x if x is not None else float("inf")) for x in offers)
    figure.cells["faults_recovery"] = (
        f"first 202 within {worst:.2f} s, first offer within {worst_offer:.2f} s (worst of"
        f" {len(all_runs)} kills; Redis down {min_max(o.killed_to_answering_s for o in all_runs)});"
        f" {sum(o.late_failures for o in all_runs)} requests not 202 from"
        f" {RECOVERY_WINDOW_S:g} s on",
        all(recovered(o) for o in all_runs),
    )
    return figure


def recovered(o: KillOutcome) -> bool:
    """Acknowledging again within the window, every request 202 after it, every surviving
    order settled, every order of after the restart offered."""
    return (
        o.recovery_s is not None
        and o.recovery_s <= RECOVERY_WINDOW_S
        and o.late_failures == 0
        and o.unsettled == 0
        and o.dispatched_after == o.acknowledged_after > 0
    )


def settled_text(outs: list[KillOutcome]) -> str:
    unsettled = sum(o.unsettled for o in outs)
    completed = sum(o.final.get("COMPLETED", 0) for o in outs)
    return f"{completed:,} completed by the drivers, {unsettled} left unsettled"


def min_max(values: Any) -> str:
    xs = sorted(values)
    return f"{xs[0]:.1f}-{xs[-1]:.1f} s"


def faults_note() -> str:
    """Figure 20's paragraph of the method."""
    body = (__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip()
    return (
        f"20. **Redis SIGKILL under load.** {body} Each policy is killed {ROUNDS} times, the"
        f" policies alternately, {DRIVERS} drivers, dispatchers with concurrency {CONCURRENCY};"
        f" posting {BEFORE_S:g} s before the kill, {DOWN_S:g} s down, {AFTER_S:g} s after."
        f" A SIGKILL of the process alone loses, with either policy, only what Redis had not"
        f" yet written to the kernel when it replied: nothing, unless `everysec` had postponed"
        f" its write behind an fsync still running (a slow disk; up to 2 s). What `everysec`"
        f" risks is a crash of the machine (up to the last 1-2 s), which no process kill"
        f" shows. A policy's verdict also needs the recovery: the first 202 within"
        f" {RECOVERY_WINDOW_S:g} s of Redis answering again, every request 202 from then on,"
        f" every order acknowledged after the restart offered, and every surviving order driven"
        f" to a final state."
    )
