"""Rides: acceptance onto the city queue, reads, cancellation and completion."""

from __future__ import annotations

import hashlib
import uuid
from typing import cast, get_args

import orjson
from redis.asyncio import Redis

from rideflow import keys
from rideflow.cities import CityMap, area_text
from rideflow.config import City, Settings
from rideflow.errors import Conflict, NotFound, Unprocessable
from rideflow.schemas import (
    DriverBrief,
    Point,
    RideCreate,
    RideEvent,
    RideEvents,
    RideStatus,
    RideView,
)
from rideflow.scripts import Scripts
from rideflow.timefmt import from_us

IDEMPOTENCY_TTL_S = 86_400
CANCELLABLE = ("QUEUED", "SEARCHING", "ASSIGNED")
COMPLETABLE = ("ASSIGNED",)
STATUSES: tuple[str, ...] = get_args(RideStatus)


class Rides:
    """The ride store; one instance per process, shared by requests."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings, cities: CityMap):
        self.redis, self.scripts, self.settings, self.cities = redis, scripts, settings, cities
        self.deadline_ms = int(settings.ride_deadline_s * 1000)
        self.stale_ms = int(settings.driver_stale_s * 1000)

    def city_of_pickup(self, pickup: Point, field: str = "pickup") -> City:
        """The city whose service area holds the pickup, or a 422 that lists the areas."""
        city = self.cities.locate(pickup.lat, pickup.lng)
        if city is None:
            areas = "; ".join(area_text(c) for c in self.cities)
            raise Unprocessable(
                f"{pickup.lat}, {pickup.lng} is outside every service area ({areas})", field=field
            )
        return city

    async def create(self, body: RideCreate, idempotency_key: str | None = None) -> tuple[str, str]:
        """Queue a ride for dispatch in one round trip; returns (ride id, city code).

        The same `Idempotency-Key` from the same rider returns the first ride; reused for a
        different request it is a conflict.
        """
        city_conf = self.city_of_pickup(body.pickup)
        city = city_conf.code
        ride_id = f"{city}-{uuid.uuid4().hex}"
        ride_keys = [keys.ride(city, ride_id), keys.requests(city), keys.ride_events(city, ride_id)]
        p, d = body.pickup, body.dropoff
        args: list[str | int] = [
            ride_id,
            body.rider_id,
            f"{p.lat},{p.lng}",
            f"{d.lat},{d.lng}",
            self.deadline_ms,
            body.strategy or city_conf.strategy,
        ]
        if idempotency_key is not None:
            ride_keys.append(keys.idempotency(city, body.rider_id, idempotency_key))
            fingerprint = hashlib.sha256(orjson.dumps(body.model_dump())).hexdigest()[:32]
            args += [IDEMPOTENCY_TTL_S, fingerprint]
        outcome, stored_id = await self.scripts.ride_enqueue(keys=ride_keys, args=args)
        if outcome == -1:
            raise Conflict(
                f"Idempotency-Key {idempotency_key!r} was already used for a different request "
                f"(ride {stored_id})"
            )
        return str(stored_id), city

    def _city(self, ride_id: str) -> str:
        code = ride_id.partition("-")[0]
        if self.cities.get(code) is None:
            raise NotFound(f"no ride with id {ride_id!r}")
        return code

    async def get(self, ride_id: str) -> RideView:
        """A ride with its driver and the time of each transition."""
        city = self._city(ride_id)
        h = cast(dict[str, str], await self.redis.hgetall(keys.ride(city, ride_id)))
        if not h:
            raise NotFound(f"no ride with id {ride_id!r}")
        driver = None
        if h.get("driver"):
            profile = await self.redis.hmget(
                keys.driver(city, h["driver"]), ["name", "rating", "vehicle"]
            )
            name, rating, vehicle = cast(list[str | None], profile)
            driver = DriverBrief(
                id=h["driver"], name=name or "", rating=float(rating or 0), vehicle=vehicle or ""
            )
        return RideView(
            ride_id=ride_id,
            city=city,
            rider_id=h["rider_id"],
            status=h["status"],
            strategy=h.get("strategy", "nearest"),
            pickup=_point(h["pickup"]),
            dropoff=_point(h["dropoff"]),
            driver=driver,
            pickup_distance_m=float(h["pickup_m"]) if "pickup_m" in h else None,
            attempts=int(h.get("attempts", 0)),
            reason=h.get("reason"),
            created_at=from_us(h["t_QUEUED"]),
            transitions={s: from_us(h[f"t_{s}"]) for s in STATUSES if f"t_{s}" in h},
        )

    async def events(self, ride_id: str, after: str | None = None) -> RideEvents:
        """A ride's transitions in order, or only those after the event id `after`."""
        city = self._city(ride_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.ride(city, ride_id))
            pipe.xrange(keys.ride_events(city, ride_id), min=f"({after}" if after else "-")
            exists, entries = await pipe.execute()
        if not exists:
            raise NotFound(f"no ride with id {ride_id!r}")
        return RideEvents(
            ride_id=ride_id,
            events=[
                RideEvent(
                    id=event_id,
                    status=f["status"],
                    at=from_us(f["at"]),
                    driver_id=f.get("driver") or None,
                    pickup_distance_m=float(f["pickup_m"]) if "pickup_m" in f else None,
                    reason=f.get("reason"),
                )
                for event_id, f in entries
            ],
        )

    async def cancel(self, ride_id: str) -> RideView:
        """Cancel a live ride; a reserved driver goes back to the pool at once."""
        return await self._finish(ride_id, "CANCELLED", CANCELLABLE, "cancelled")

    async def complete(self, ride_id: str) -> RideView:
        """Complete an assigned ride; the driver goes back to the pool."""
        return await self._finish(ride_id, "COMPLETED", COMPLETABLE, "completed")

    async def _finish(
        self, ride_id: str, target: str, allowed: tuple[str, ...], verb: str
    ) -> RideView:
        city = self._city(ride_id)
        ride_key = keys.ride(city, ride_id)
        # The driver can change between our read and the script (a dispatcher assigning one):
        # the script refuses then, and we read again.
        for _ in range(5):
            reply = await self.redis.hmget(ride_key, ["status", "driver"])
            status, driver = cast(list[str | None], reply)
            if status is None:
                raise NotFound(f"no ride with id {ride_id!r}")
            script_keys = [
                ride_key,
                keys.pool(city),
                keys.seen(city),
                keys.retries(city),
                keys.ride_events(city, ride_id),
            ]
            if driver:
                script_keys.append(keys.driver(city, driver))
            outcome = await self.scripts.ride_finish(
                keys=script_keys,
                args=[
                    ride_id,
                    target,
                    ",".join(allowed),
                    driver or "",
                    self.stale_ms,
                    self.settings.ride_retention_s,
                ],
            )
            if outcome[0] == "OK":
                return await self.get(ride_id)
            if outcome[0] == "ILLEGAL":
                raise Conflict(
                    f"ride {ride_id} is {outcome[1]}; only a ride that is "
                    f"{' or '.join(allowed)} can be {verb}"
                )
            if outcome[0] == "GONE":
                raise NotFound(f"no ride with id {ride_id!r}")
        raise Conflict(f"ride {ride_id} kept changing while being {verb}; retry")


def _point(text: str) -> Point:
    lat, _, lng = text.partition(",")
    return Point(lat=float(lat), lng=float(lng))
