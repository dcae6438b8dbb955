"""Dispatching one order: begin searching, widen the radius, reserve a driver and offer them the
order, or schedule a retry."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, replace

from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.dispatch.geo import nearby, pairs
from rideflow.dispatch.matcher import Candidate, needs_profiles, rank
from rideflow.redis import keys
from rideflow.redis.scripts import Scripts

NO_DRIVER_REASON = "no available driver within the search radius before the deadline"


@dataclass(frozen=True, slots=True)
class Offered:
    """The offer made to the reserved driver, with their profile."""

    offer_id: str
    token: int
    deadline_ms: int
    name: str
    rating: float
    vehicle: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling an order led to: its status now, and the driver and offer when one was
    offered the order."""

    status: str
    driver: Candidate | None = None
    offer: Offered | None = None


class Dispatcher:
    """Matches orders of any city; safe to run in many tasks and processes at once, because
    every state change is one Lua script that re-checks what it relies on."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings):
        self.redis, self.scripts, self.settings = redis, scripts, settings

    async def handle(
        self, city: str, order_id: str, entry_id: str = "", *, once: bool = False
    ) -> Outcome:
        """Take an order from the stream (`entry_id`) or the retry set ('') and offer it to the
        best eligible driver. `once`: search each radius once and, finding nobody, end the order
        NO_DRIVER_FOUND instead of retrying (for callers that answer at once).

        Marking the order SEARCHING and the first, smallest search are one round trip; the
        radius widens from there, up to the order's own widest radius when it has one.
        """
        begun = await self.scripts.order_begin(
            keys=[
                keys.order(city, order_id),
                keys.requests(city),
                keys.retries(city),
                keys.pool(city),
                keys.order_events(city, order_id),
                keys.city_events(city),
                keys.excluded(city, order_id),
            ],
            args=[
                order_id,
                entry_id,
                keys.DISPATCH_GROUP,
                self.settings.search_radii_m[0],
                self.settings.search_count,
                self.settings.order_retention_s,
            ],
        )
        if begun[0] != "SEARCHING":
            return Outcome(begun[0])
        lat, _, lng = begun[1].partition(",")
        strategy, widest, count = str(begun[2]), begun[3], int(begun[4])
        radii = self.settings.search_radii_m
        if widest:
            radii = [r for r in radii if r < float(widest)] + [float(widest)]
        for i, radius in enumerate(radii):
            found = (
                pairs(begun[5:])
                if i == 0
                else await nearby(self.redis, city, float(lat), float(lng), radius, count)
            )
            if not found:
                continue
            if needs_profiles(strategy):
                found = await self._with_profiles(city, found)
            ranked = rank(strategy, found, self.settings.city_speed_mps[city])
            outcome = await self._reserve(city, order_id, entry_id, ranked)
            if outcome is not None:
                return outcome
        return await self._retry_later(city, order_id, entry_id, give_up=once)

    async def give_up(self, city: str, order_id: str, entry_id: str, reason: str) -> Outcome:
        """End an order NO_DRIVER_FOUND now with `reason` (its dispatch keeps failing),
        acknowledging its entry in the same step."""
        return await self._retry_later(city, order_id, entry_id, give_up=True, reason=reason)

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
        self, city: str, order_id: str, entry_id: str, ranked: list[Candidate]
    ) -> Outcome | None:
        offer_id = f"{order_id}-{secrets.token_hex(4)}"
        args: list[str | float] = [
            order_id,
            entry_id,
            keys.DISPATCH_GROUP,
            self.settings.stale_ms,
            offer_id,
            self.settings.offer_lease_grace_ms,
            self.settings.order_retention_s,
        ]
        candidate_keys: list[str] = []
        for c in ranked:
            args.extend((c.driver_id, round(c.distance_m, 1)))
            candidate_keys += [keys.driver(city, c.driver_id), keys.lease(city, c.driver_id)]
        reply = await self.scripts.offer_create(
            keys=[
                keys.order(city, order_id),
                keys.pool(city),
                keys.seen(city),
                keys.requests(city),
                keys.retries(city),
                keys.order_events(city, order_id),
                keys.city_events(city),
                keys.offers_due(city),
                keys.fence(city),
                keys.excluded(city, order_id),
                keys.offer(city, offer_id),
                *candidate_keys,
            ],
            args=args,
        )
        index, detail = reply[0], reply[1]
        if index > 0:
            _, _, token, deadline_ms, name, rating, vehicle = reply
            offered = Offered(
                offer_id, int(token), int(deadline_ms), name, float(rating or 0), vehicle
            )
            return Outcome("OFFERED", ranked[index - 1], offered)
        if index < 0:
            return Outcome(str(detail))
        if detail == "LATE":
            return await self._retry_later(city, order_id, entry_id)  # ends it: NO_DRIVER_FOUND
        return None

    async def _retry_later(
        self,
        city: str,
        order_id: str,
        entry_id: str,
        *,
        give_up: bool = False,
        reason: str = "no available driver within the search radius",
    ) -> Outcome:
        """Schedule the next search, or end the order NO_DRIVER_FOUND: at its deadline (with
        NO_DRIVER_REASON), or now when `give_up` (with `reason`)."""
        reply = await self.scripts.order_retry(
            keys=[
                keys.order(city, order_id),
                keys.requests(city),
                keys.retries(city),
                keys.order_events(city, order_id),
                keys.city_events(city),
            ],
            args=[
                order_id,
                entry_id,
                keys.DISPATCH_GROUP,
                self.settings.retry_base_ms,
                self.settings.retry_max_ms,
                random.random(),
                self.settings.order_retention_s,
                "1" if give_up else "0",
                reason if give_up else NO_DRIVER_REASON,
            ],
        )
        return Outcome(str(reply[0]))


def _number(value: str | None) -> float | None:
    return float(value) if value else None
