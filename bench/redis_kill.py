"""The Redis SIGKILL scenario: orders flow at a steady rate through a running RideFlow (an API
process, dispatchers, simulated drivers), Redis is killed with SIGKILL, started again on the
same port from the same append-only file, and the run is accounted for: which acknowledged
orders (202) are gone, how long after Redis answered again the API acknowledged orders again,
and whether every order that survived was driven to a final state.

The processes are started by the caller (the fault suite with its fixtures, `make bench` with
its harness); this module only inflicts the fault and counts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from bench.aof_redis import AofRedis
from bench.order_flow import DriverCrew, OrderLoad, order_statuses, unsettled
from rideflow.orders.states import FINAL
from rideflow.redis import keys

RECOVERY_WINDOW_S = 5.0
"""Requests sent this long after Redis answers again must all be acknowledged (the issue's
"recovers by itself within 5 s")."""


@dataclass
class KillOutcome:
    """What one kill did (times in seconds)."""

    fsync: str
    rate: float
    answered: int
    statuses: dict[int, int]
    transport_errors: int
    acknowledged: int
    acknowledged_before_kill: int
    lost: list[str]
    killed_to_answering_s: float
    recovery_s: float | None
    """From Redis answering again to the first 202 received after it."""
    late_failures: int
    """Requests sent `RECOVERY_WINDOW_S` or more after Redis answered again that were not 202."""
    dispatched_after: int
    """Orders acknowledged after the restart that a driver was offered."""
    dispatch_resumed_s: float | None
    """From Redis answering again to the first offer made after it (Redis' clock)."""
    acknowledged_after: int
    final: dict[str, int] = field(default_factory=dict)
    unsettled: int = 0
    crew: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the test's output and the benchmark's log."""
        recovery = "never" if self.recovery_s is None else f"{self.recovery_s:.2f} s"
        resumed = "never" if self.dispatch_resumed_s is None else f"{self.dispatch_resumed_s:.2f} s"
        return (
            f"appendfsync {self.fsync}: {self.acknowledged} orders acknowledged at"
            f" {self.rate:g}/s ({self.acknowledged_before_kill} before the kill), lost"
            f" {len(self.lost)}; Redis down {self.killed_to_answering_s:.2f} s; first 202"
            f" {recovery} after it answered again, first offer {resumed}; {self.late_failures}"
            f" not 202 past"
            f" {RECOVERY_WINDOW_S:g} s; answers {dict(sorted(self.statuses.items()))},"
            f" {self.transport_errors} transport errors; final states {self.final},"
            f" {self.unsettled} unsettled"
        )

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["lost_count"] = len(self.lost)
        out["lost"] = self.lost[:20]
        return out


async def kill_under_load(
    server: AofRedis,
    api_port: int,
    headers: dict[str, str],
    crew: DriverCrew | None,
    *,
    rate: float = 200.0,
    before_s: float = 4.0,
    down_s: float = 2.0,
    after_s: float = 8.0,
    settle_s: float = 60.0,
    city: str = "blr",
) -> KillOutcome:
    """Post orders for `before_s + down_s + after_s`; SIGKILL Redis `before_s` in, start it
    again `down_s` later (the outage's length is the fault's, not a wait for anything), and
    account for every answer. With a `crew`, wait up to `settle_s` for every order that
    survived to reach a final state."""
    load = OrderLoad(api_port, {"Content-Type": "application/json", **headers}, rate)
    stop_crew = asyncio.Event()
    crew_task = asyncio.create_task(crew.run(stop_crew)) if crew else None
    posting = asyncio.create_task(load.run(before_s + down_s + after_s))
    try:
        await asyncio.sleep(before_s)  # pacing: the fault's place in the run
        killed = time.monotonic()
        server.kill9()
        await asyncio.sleep(down_s)  # the outage's length
        back = await asyncio.to_thread(server.start)
        back_wall = time.time() - (time.monotonic() - back)
        await posting
    finally:
        posting.cancel()
    redis = Redis.from_url(server.url, decode_responses=True)
    try:
        acked = load.acknowledged()
        statuses = await order_statuses(redis, city, acked)
        lost = [o for o, s in zip(acked, statuses, strict=True) if s is None]
        after = load.acknowledged(after=back)
        left = len(acked) - len(lost)
        if crew is not None:
            deadline = time.monotonic() + settle_s
            while True:
                statuses = await order_statuses(redis, city, acked)
                left = unsettled(statuses)
                if left == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        final = Counter(s for s in statuses if s is not None and s in FINAL)
        offered = await _offered(redis, city, after)
        resumed = await _first_offer(redis, city, back_wall)
    finally:
        await redis.aclose()
        stop_crew.set()
        if crew_task is not None:
            await crew_task
    first_202 = min((a.answered for a in load.answers if a.status == 202 and a.answered > back),
                    default=None)  # fmt: skip
    late = [a for a in load.answers if a.sent >= back + RECOVERY_WINDOW_S and a.status != 202]
    result = load.result
    return KillOutcome(
        fsync=server.fsync,
        rate=rate,
        answered=len(load.answers),
        statuses=dict(load.statuses()),
        transport_errors=(result.errors + result.timeouts) if result else 0,
        acknowledged=len(acked),
        acknowledged_before_kill=len(load.acknowledged(before=killed)),
        lost=lost,
        killed_to_answering_s=back - killed,
        recovery_s=None if first_202 is None else first_202 - back,
        late_failures=len(late),
        dispatched_after=offered,
        dispatch_resumed_s=resumed,
        acknowledged_after=len(after),
        final=dict(final),
        unsettled=left if crew is not None else 0,
        crew=crew.stats.__dict__ if crew else {},
    )


async def _offered(redis: Redis, city: str, order_ids: list[str]) -> int:
    """How many of the orders were offered to a driver at some point."""
    count = 0
    for start in range(0, len(order_ids), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for order_id in order_ids[start : start + 1000]:
                pipe.hget(keys.order(city, order_id), "t_OFFERED")
            count += sum(1 for t in await pipe.execute() if t)
    return count


async def _first_offer(redis: Redis, city: str, since_s: float) -> float | None:
    """Seconds from `since_s` (epoch) to the first offer made after it, from the city's event
    stream (its entry ids are Redis' clock in ms)."""
    start = f"{int(since_s * 1000)}-0"
    while True:
        entries = cast(
            list[tuple[str, dict[str, str]]],
            await redis.xrange(keys.city_events(city), min=start, count=1000),
        )
        for _, fields in entries:
            if fields.get("status") == "OFFERED" and int(fields["at"]) / 1e6 >= since_s:
                return int(fields["at"]) / 1e6 - since_s
        if len(entries) < 1000:
            return None
        start = "(" + entries[-1][0]
