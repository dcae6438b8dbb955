"""Dispatching one order: begin searching, widen the radius, have a driver reserved and offered
the order (`rideflow.dispatch.offers`), or schedule a retry."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.dispatch.geo import nearby, pairs, with_profiles
from rideflow.dispatch.matcher import Candidate, needs_profiles, rank
from rideflow.dispatch.offers import Offered, Offers, Reservation
from rideflow.metrics import families as metrics
from rideflow.redis import keys
from rideflow.redis.scripts import Scripts

NO_DRIVER_REASON = "no available driver within the search radius before the deadline"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling an order led to: its status now, and the driver and offer when one was
    offered the order."""

    status: str
    driver: Candidate | None = None
    offer: Offered | None = None


class Begun(NamedTuple):
    """`order_begin.lua`'s reply: the order's status, and when it is SEARCHING, what to search
    around, the first search's hits (nearest first), and how long it waited queued when this
    call took it out of the queue (None otherwise)."""

    status: str
    lat: float
    lng: float
    strategy: str
    widest_m: float | None
    ask: int
    found: list[Candidate]
    waited_us: int | None = None


def parse_begun(reply: list[Any]) -> Begun:
    """`order_begin.lua`'s reply, typed."""
    if reply[0] != "SEARCHING":
        return Begun(str(reply[0]), 0.0, 0.0, "", None, 0, [])
    lat, _, lng = reply[1].partition(",")
    widest, waited = reply[3], reply[5]
    return Begun(
        "SEARCHING",
        float(lat),
        float(lng),
        str(reply[2]),
        float(widest) if widest else None,
        int(reply[4]),
        pairs(reply[6:]),
        int(waited) if waited else None,
    )


class Retried(NamedTuple):
    """`order_retry.lua`'s reply: SEARCHING with the next attempt's time, NO_DRIVER_FOUND, or
    the status of an order that was not searching ('GONE' for none)."""

    status: str
    next_ms: int | None = None


def parse_retried(reply: list[Any]) -> Retried:
    """`order_retry.lua`'s reply, typed."""
    return Retried(str(reply[0]), int(reply[1]) if len(reply) > 1 else None)


class Dispatcher:
    """Matches orders of any city; safe to run in many tasks and processes at once, because
    every state change is one Lua script that re-checks what it relies on."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings, offers: Offers):
        self.redis, self.scripts, self.settings, self.offers = redis, scripts, settings, offers

    async def handle(
        self, city: str, order_id: str, entry_id: str = "", *, once: bool = False
    ) -> Outcome:
        """Take an order from the stream (`entry_id`) or the retry set ('') and offer it to the
        best eligible driver. `once`: search each radius once and, finding nobody, end the order
        NO_DRIVER_FOUND instead of retrying (for callers that answer at once).

        Marking the order SEARCHING and the first, smallest search are one round trip; the
        radius widens from there, up to the order's own widest radius when it has one.
        """
        begun = await self.begin(city, order_id, entry_id)
        if begun.status != "SEARCHING":
            return Outcome(begun.status)
        return await self.search(city, order_id, entry_id, begun, once=once)

    async def begin(self, city: str, order_id: str, entry_id: str = "") -> Begun:
        """Mark the order SEARCHING (when it was QUEUED) and run its first search; an order
        past searching is settled (its entry acknowledged) and its status returned."""
        begun = parse_begun(
            await self.scripts.order_begin(
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
                    *self.settings.event_caps(),
                    order_id,
                    entry_id,
                    keys.DISPATCH_GROUP,
                    self.settings.search_radii_m[0],
                    self.settings.search_count,
                    self.settings.order_retention_s,
                ],
            )
        )
        if begun.waited_us is not None:
            metrics.stage_lasted("queued_to_searching", begun.waited_us)
        return begun

    def radii(self, begun: Begun) -> list[float]:
        """The search steps of an order: the configured ones, up to its own widest radius."""
        radii = self.settings.search_radii_m
        if begun.widest_m:
            radii = [r for r in radii if r < begun.widest_m] + [begun.widest_m]
        return radii

    async def search(
        self, city: str, order_id: str, entry_id: str, begun: Begun, *, once: bool = False
    ) -> Outcome:
        """One order on its own (greedy): widen the search from `begun`'s first hits until a
        ranked candidate is reserved, or schedule a retry (end the order, when `once`)."""
        for i, radius in enumerate(self.radii(begun)):
            found = (
                begun.found
                if i == 0
                else await nearby(self.redis, city, begun.lat, begun.lng, radius, begun.ask)
            )
            if not found:
                continue
            if needs_profiles(begun.strategy):
                found = await self.with_profiles(city, found)
            ranked = rank(begun.strategy, found, self.settings.city_speed_mps[city])
            outcome = await self.reserve(city, order_id, entry_id, ranked)
            if outcome is not None:
                return outcome
        return await self._retry_later(city, order_id, entry_id, give_up=once)

    async def give_up(self, city: str, order_id: str, entry_id: str, reason: str) -> Outcome:
        """End an order NO_DRIVER_FOUND now with `reason` (its dispatch keeps failing),
        acknowledging its entry in the same step."""
        return await self._retry_later(city, order_id, entry_id, give_up=True, reason=reason)

    async def with_profiles(self, city: str, found: list[Candidate]) -> list[Candidate]:
        """The candidates with their ratings and recent speeds, read in one round trip."""
        return await with_profiles(self.redis, city, found)

    async def reserve(
        self, city: str, order_id: str, entry_id: str, ranked: list[Candidate]
    ) -> Outcome | None:
        """Have the best eligible candidate offered the order; None when none was eligible."""
        reserved = await self.offers.create(city, order_id, entry_id, ranked)
        if reserved.outcome is Reservation.OFFERED:
            return Outcome("OFFERED", ranked[reserved.candidate], reserved.offer)
        if reserved.outcome is Reservation.NOT_SEARCHING:
            return Outcome(reserved.status)
        if reserved.outcome is Reservation.LATE:
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
                *self.settings.event_caps(),
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
        return Outcome(parse_retried(reply).status)
