"""Batch matching, the Redis part: the orders a dispatcher collected over the window are split
into zones, each zone's K-nearest candidates are read in pipelined round trips, the assignment
is solved (`rideflow.dispatch.batch`), and every pair is reserved with the atomic offer step.

An order whose assigned driver was taken meanwhile is offered to its next best candidate that no
other order of the batch was assigned; an order the batch could not place at all falls back to
the greedy search (wider radii, then a retry with backoff, after which it joins a later batch).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from rideflow.config import Settings
from rideflow.dispatch.batch import assign, zone_of
from rideflow.dispatch.matcher import Candidate, eta_s
from rideflow.dispatch.service import Begun, Dispatcher, Outcome
from rideflow.redis import keys


@dataclass(slots=True)
class Waiting:
    """An order collected for the next batch: SEARCHING, its stream entry (if it came from the
    stream) still unacknowledged, so a dispatcher that dies holding it loses nothing."""

    order_id: str
    entry_id: str
    begun: Begun
    since: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Solved:
    """What one batch led to, for counters and the benchmark."""

    outcomes: list[tuple[Waiting, Outcome]] = field(default_factory=list)
    solves_ms: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    placed: int = 0
    """Orders offered the driver the assignment gave them or a fallback of theirs."""
    greedy: int = 0
    """Orders the batch could not place, handed to the greedy search."""


class BatchMatcher:
    """Solves and reserves the batches of any city; one per dispatcher process."""

    def __init__(self, dispatcher: Dispatcher, settings: Settings) -> None:
        self.dispatcher, self.settings = dispatcher, settings
        self.redis = dispatcher.redis

    async def run(self, city: str, waiting: Sequence[Waiting]) -> Solved:
        """Place every order of `waiting`: zone by zone (in a fixed order), each zone in chunks
        of at most `batch_zone_cap` orders, oldest first; a driver one chunk was assigned is no
        candidate of the next."""
        zones: dict[tuple[int, int], list[Waiting]] = {}
        for w in waiting:
            zone = zone_of(w.begun.lat, w.begun.lng, self.settings.batch_zone_km)
            zones.setdefault(zone, []).append(w)
        solved, taken = Solved(), set[str]()
        cap = self.settings.batch_zone_cap
        for zone in sorted(zones):
            orders = sorted(zones[zone], key=lambda w: w.since)
            for start in range(0, len(orders), cap):
                await self._chunk(city, orders[start : start + cap], taken, solved)
        return solved

    async def _chunk(
        self, city: str, orders: list[Waiting], taken: set[str], solved: Solved
    ) -> None:
        found = await self.candidates(city, orders, taken)
        started = time.perf_counter()
        edges = [[(c.driver_id, self.cost(city, c)) for c in hits] for hits in found]
        result = assign(edges)
        solved.solves_ms.append((time.perf_counter() - started) * 1000)
        solved.sizes.append(len(orders))
        taken.update(d for d in result.drivers if d is not None)

        async def place(i: int) -> tuple[Waiting, Outcome]:
            w, driver = orders[i], result.drivers[i]
            if driver is not None:
                by_id = {c.driver_id: c for c in found[i]}
                ranked = [by_id[driver], *(by_id[d] for d in result.fallbacks[i])]
                outcome = await self.dispatcher.reserve(city, w.order_id, w.entry_id, ranked)
                if outcome is not None:
                    solved.placed += 1
                    return w, outcome
            # Nobody of its batch for it: on its own, wider, then a retry (a later batch).
            solved.greedy += 1
            return w, await self.dispatcher.search(city, w.order_id, w.entry_id, w.begun)

        solved.outcomes += await asyncio.gather(*(place(i) for i in range(len(orders))))

    def cost(self, city: str, candidate: Candidate) -> float:
        """What the assignment minimises for one pair."""
        if self.settings.batch_cost == "eta":
            return eta_s(candidate, self.settings.city_speed_mps[city])
        return candidate.distance_m

    async def candidates(
        self, city: str, orders: Sequence[Waiting], taken: set[str]
    ) -> list[list[Candidate]]:
        """Each order's K nearest available drivers (not excluded from it, not `taken`), read
        fresh: the search widens step by step for the orders short of K, each step one
        pipelined round trip for all of them. Drivers an earlier chunk reserved have left the
        pool; `taken` only filters those whose reservation failed."""
        k = self.settings.batch_candidates
        async with self.redis.pipeline(transaction=False) as pipe:
            for w in orders:
                pipe.smembers(keys.excluded(city, w.order_id))
            excluded = cast(list[set[str]], await pipe.execute())
        found: list[list[Candidate]] = [[] for _ in orders]
        todo = list(range(len(orders)))
        step = 0
        while todo:
            asked: list[int] = []
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in todo:
                    radii = self.dispatcher.radii(orders[i].begun)
                    if step >= len(radii):
                        continue
                    b = orders[i].begun
                    pipe.geosearch(
                        keys.pool(city),
                        longitude=b.lng,
                        latitude=b.lat,
                        radius=radii[step],
                        unit="m",
                        sort="ASC",
                        count=k + len(excluded[i]),
                        withdist=True,
                    )
                    asked.append(i)
                replies = cast(list[list[Any]], await pipe.execute()) if asked else []
            todo = []
            for i, reply in zip(asked, replies, strict=True):
                hits = [
                    Candidate(str(hit[0]), float(hit[1]))
                    for hit in reply
                    if hit[0] not in excluded[i] and hit[0] not in taken
                ][:k]
                found[i] = hits
                if len(hits) < k:
                    todo.append(i)
            step += 1
        if self.settings.batch_cost == "eta":
            # Each driver's profile once, in one round trip, however many orders they are near.
            unique = {c.driver_id: c for hits in found for c in hits}
            known = {
                c.driver_id: c
                for c in await self.dispatcher.with_profiles(city, list(unique.values()))
            }
            found = [
                [
                    replace(
                        c, rating=known[c.driver_id].rating, speed_mps=known[c.driver_id].speed_mps
                    )
                    for c in hits
                ]
                for hits in found
            ]
        return found
