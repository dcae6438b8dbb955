"""Drivers: registration, online status and positions, kept in their city's Redis keys."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from enum import IntEnum
from typing import cast

from redis.asyncio import Redis

from rideflow.cities import CityMap, area_text
from rideflow.config import Settings
from rideflow.drivers.schemas import (
    DriverCreate,
    DriverLocation,
    DriverView,
    LocationBatchResult,
    Position,
    RejectedLocation,
)
from rideflow.errors import Conflict, NotFound, Unprocessable
from rideflow.redis import keys
from rideflow.redis.clock import from_ms, to_ms
from rideflow.redis.scripts import Scripts


class Fix(IntEnum):
    """`driver_positions.lua`'s code for each position (kept as ints: compared, never built, on
    the ingest path)."""

    UNKNOWN = 0
    """No such driver in this city."""
    RECORDED = 1
    OUT_OF_ORDER = 2
    """Older than the position already held."""


class Drivers:
    """The driver store; one instance per process, shared by requests."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings, cities: CityMap):
        self.redis, self.scripts, self.settings, self.cities = redis, scripts, settings, cities

    async def create(self, body: DriverCreate) -> DriverView:
        """Register a driver (offline until they say otherwise); an existing id is a conflict."""
        code = body.city or self.settings.cities[0].code
        if self.cities.get(code) is None:
            raise Unprocessable(f"unknown city {code!r}; known: {self.cities.codes}", field="city")
        # The directory claims the id across cities; the city hash is created atomically after.
        if not await self.redis.hsetnx(keys.DRIVER_DIRECTORY, body.id, code):
            home = cast(str | None, await self.redis.hget(keys.DRIVER_DIRECTORY, body.id))
            if home != code:
                raise Conflict(f"driver {body.id} already exists in city {home}")
        created = await self.scripts.driver_create(
            keys=[keys.driver(code, body.id)],
            args=[body.id, body.name, body.rating, body.vehicle, code],
        )
        if created != 1:
            raise Conflict(f"driver {body.id} already exists")
        return DriverView(
            id=body.id,
            name=body.name,
            rating=body.rating,
            vehicle=body.vehicle,
            city=code,
            status="offline",
        )

    async def city_of(self, driver_id: str) -> str:
        """The city a driver is registered in."""
        code = cast(str | None, await self.redis.hget(keys.DRIVER_DIRECTORY, driver_id))
        if code is None or self.cities.get(code) is None:
            raise NotFound(f"no driver with id {driver_id!r}")
        return str(code)

    async def get(self, driver_id: str) -> DriverView:
        """A driver's profile, status, current order and offer, and last position."""
        code = await self.city_of(driver_id)
        h = cast(dict[str, str], await self.redis.hgetall(keys.driver(code, driver_id)))
        return _view(driver_id, code, h)

    async def set_status(self, driver_id: str, status: str) -> DriverView:
        """Take a driver online (into the pool once they have a fresh position) or offline."""
        code = await self.city_of(driver_id)
        flat = await self.scripts.driver_status(
            keys=[keys.pool(code), keys.seen(code), keys.driver(code, driver_id)],
            args=[driver_id, status, self.settings.stale_ms],
        )
        return _view(driver_id, code, dict(zip(flat[::2], flat[1::2], strict=True)))

    async def record_one(self, location: DriverLocation) -> None:
        """Record one position; any refusal is an error response."""
        result = await self.record([location])
        if result.rejected:
            raise refusal(result.rejected[0].reason)

    async def record(self, locations: list[DriverLocation]) -> LocationBatchResult:
        """Record many positions with one script call per city, all in one round trip."""
        rejected: list[RejectedLocation] = []
        by_city: dict[str, list[tuple[int, DriverLocation]]] = defaultdict(list)
        oldest_ms = int(time.time() * 1000) - self.settings.stale_ms
        for i, loc in enumerate(locations):
            city = self.cities.locate(loc.lat, loc.lng)
            if loc.recorded_at is not None and to_ms(loc.recorded_at) < oldest_ms:
                # It would be stored only to mark the driver stale at once (and a fix dated
                # before 1970 cannot even be read back): refused, so the device learns its clock
                # or its queue is off.
                rejected.append(
                    RejectedLocation(
                        index=i,
                        driver_id=loc.driver_id,
                        reason=f"recorded_at {loc.recorded_at.isoformat()} is older than the "
                        f"stale window ({self.settings.stale_ms / 1000:g} s); send a current fix",
                    )
                )
            elif city is None:
                rejected.append(
                    RejectedLocation(
                        index=i,
                        driver_id=loc.driver_id,
                        reason=f"position {loc.lat}, {loc.lng} is outside every service area",
                    )
                )
            else:
                by_city[city.code].append((i, loc))
        unknown: list[tuple[int, DriverLocation, str]] = []
        if by_city:
            outcomes = await asyncio.gather(
                *(
                    self._record_city(code, [loc for _, loc in items])
                    for code, items in by_city.items()
                )
            )
            for (code, items), codes in zip(by_city.items(), outcomes, strict=True):
                for (i, loc), outcome in zip(items, codes, strict=True):
                    if outcome == Fix.UNKNOWN:
                        unknown.append((i, loc, code))
                    elif outcome == Fix.OUT_OF_ORDER:
                        rejected.append(
                            RejectedLocation(
                                index=i,
                                driver_id=loc.driver_id,
                                reason="recorded_at is older than the position already held",
                            )
                        )
        rejected.extend(await self._explain_unknown(unknown))
        rejected.sort(key=lambda r: r.index)
        return LocationBatchResult(accepted=len(locations) - len(rejected), rejected=rejected)

    async def _record_city(self, code: str, items: list[DriverLocation]) -> list[int]:
        driver_keys = [keys.driver(code, loc.driver_id) for loc in items]
        args: list[str | int | float] = [self.settings.stale_ms]
        for loc in items:
            at = to_ms(loc.recorded_at) if loc.recorded_at else 0
            speed = "" if loc.speed_mps is None else loc.speed_mps
            args.extend((loc.driver_id, loc.lng, loc.lat, at, speed))
        args.append(keys.tracking(code))  # positions of drivers holding an order, for sockets
        codes: list[int] = await self.scripts.driver_positions(
            keys=[keys.pool(code), keys.seen(code), *driver_keys], args=args
        )
        return codes

    async def _explain_unknown(
        self, unknown: list[tuple[int, DriverLocation, str]]
    ) -> list[RejectedLocation]:
        """Say whether a refused driver does not exist or drives in another city."""
        if not unknown:
            return []
        ids = [loc.driver_id for _, loc, _ in unknown]
        homes = cast(list[str | None], await self.redis.hmget(keys.DRIVER_DIRECTORY, ids))
        out = []
        for (i, loc, code), home in zip(unknown, homes, strict=True):
            city = self.cities.get(home) if home else None
            if city is None:
                reason = f"no driver with id {loc.driver_id!r}"
            else:
                reason = (
                    f"driver {loc.driver_id} drives in {area_text(city)}; "
                    f"position {loc.lat}, {loc.lng} is in {code}"
                )
            out.append(RejectedLocation(index=i, driver_id=loc.driver_id, reason=reason))
        return out


def refusal(reason: str) -> NotFound | Unprocessable:
    """The error a refused position is answered with, one position at a time."""
    if reason.startswith("no driver"):
        return NotFound(reason)
    return Unprocessable(reason, field="recorded_at" if reason.startswith("recorded_at") else "lat")


def _view(driver_id: str, code: str, h: dict[str, str]) -> DriverView:
    """A driver as the API shows them, from their hash."""
    if not h:
        raise NotFound(f"no driver with id {driver_id!r}")
    position = None
    if "lat" in h:
        position = Position(
            lat=float(h["lat"]), lng=float(h["lng"]), recorded_at=from_ms(h["seen"])
        )
    return DriverView(
        id=driver_id,
        name=h["name"],
        rating=float(h["rating"]),
        vehicle=h["vehicle"],
        city=code,
        status=h["status"],
        order_id=h.get("order") or None,
        offer_id=h.get("offer") or None,
        position=position,
        speed_mps=float(h["speed"]) if "speed" in h else None,
    )
