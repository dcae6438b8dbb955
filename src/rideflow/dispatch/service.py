"""Dispatching one ride: begin searching, widen the radius, reserve, or schedule a retry."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from redis.asyncio import Redis

from rideflow import keys
from rideflow.config import Settings
from rideflow.dispatch.geo import nearby, pairs
from rideflow.dispatch.matcher import Candidate, kmh_to_mps, needs_profiles, rank
from rideflow.scripts import Scripts

DEFAULT_SPEED_MPS = kmh_to_mps(20.0)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling a ride led to: its status now, and the driver when one was assigned."""

    status: str
    driver: Candidate | None = None


class Dispatcher:
    """Matches rides of any city; safe to run in many tasks and processes at once, because
    every state change is one Lua script that re-checks what it relies on."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings):
        self.redis, self.scripts, self.settings = redis, scripts, settings
        self.radii_m = [r * 1000 for r in settings.search_radii_km]
        self.stale_ms = int(settings.driver_stale_s * 1000)
        self.retry_base_ms = int(settings.retry_base_s * 1000)
        self.retry_max_ms = int(settings.retry_max_s * 1000)
        self.city_speed_mps = {c.code: kmh_to_mps(c.speed_kmh) for c in settings.cities}

    async def handle(self, city: str, ride_id: str, entry_id: str = "") -> Outcome:
        """Take a ride from the stream (`entry_id`) or the retry set ('') and try to assign it.

        Marking the ride SEARCHING and the first, smallest search are one round trip; the
        radius widens from there.
        """
        begun = await self.scripts.ride_begin(
            keys=[
                keys.ride(city, ride_id),
                keys.requests(city),
                keys.retries(city),
                keys.pool(city),
                keys.ride_events(city, ride_id),
            ],
            args=[
                ride_id,
                entry_id,
                keys.DISPATCH_GROUP,
                self.radii_m[0],
                self.settings.search_count,
                self.settings.ride_retention_s,
            ],
        )
        if begun[0] != "SEARCHING":
            return Outcome(begun[0])
        lat, _, lng = begun[1].partition(",")
        strategy = str(begun[2])
        for i, radius in enumerate(self.radii_m):
            found = (
                pairs(begun[3:])
                if i == 0
                else await nearby(
                    self.redis, city, float(lat), float(lng), radius, self.settings.search_count
                )
            )
            if not found:
                continue
            if needs_profiles(strategy):
                found = await self._with_profiles(city, found)
            ranked = rank(strategy, found, self.city_speed_mps.get(city, DEFAULT_SPEED_MPS))
            outcome = await self._reserve(city, ride_id, entry_id, ranked)
            if outcome is not None:
                return outcome
        return await self._retry_later(city, ride_id, entry_id)

    async def _with_profiles(self, city: str, found: list[Candidate]) -> list[Candidate]:
        """The candidates with their ratings and recent speeds, read in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in found:
                pipe.hmget(keys.driver(city, c.driver_id), ["rating", "speed"])
            profiles = await pipe.execute()
        return [
            replace(c, rating=_number(rating), speed_mps=_number(speed))
            for c, (rating, speed) in zip(found, profiles, strict=True)
        ]

    async def _reserve(
        self, city: str, ride_id: str, entry_id: str, ranked: list[Candidate]
    ) -> Outcome | None:
        args: list[str | float] = [ride_id, entry_id, keys.DISPATCH_GROUP, self.stale_ms]
        for c in ranked:
            args.extend((c.driver_id, round(c.distance_m, 1)))
        index, detail = await self.scripts.ride_reserve(
            keys=[
                keys.ride(city, ride_id),
                keys.pool(city),
                keys.seen(city),
                keys.requests(city),
                keys.retries(city),
                keys.ride_events(city, ride_id),
                *(keys.driver(city, c.driver_id) for c in ranked),
            ],
            args=args,
        )
        if index > 0:
            return Outcome("ASSIGNED", ranked[index - 1])
        if index < 0:
            return Outcome(str(detail))
        if detail == "LATE":
            return await self._retry_later(city, ride_id, entry_id)  # ends it: NO_DRIVER_FOUND
        return None

    async def _retry_later(self, city: str, ride_id: str, entry_id: str) -> Outcome:
        reply = await self.scripts.ride_retry(
            keys=[
                keys.ride(city, ride_id),
                keys.requests(city),
                keys.retries(city),
                keys.ride_events(city, ride_id),
            ],
            args=[
                ride_id,
                entry_id,
                keys.DISPATCH_GROUP,
                self.retry_base_ms,
                self.retry_max_ms,
                random.random(),
                self.settings.ride_retention_s,
            ],
        )
        return Outcome(str(reply[0]))


def _number(value: str | None) -> float | None:
    return float(value) if value else None
