"""The order store, rides and deliveries alike: acceptance onto the city queue, reads, event
history, and the steps people make (the state machine itself is `rideflow.orders.states`)."""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any, NamedTuple, cast

from redis.asyncio import Redis

from rideflow.cities import CityMap, area_text
from rideflow.config import City, Settings
from rideflow.errors import Conflict, NotFound, Unprocessable
from rideflow.idempotency import IDEMPOTENCY_TTL_S, fingerprint
from rideflow.metrics import families as metrics
from rideflow.orders.schemas import (
    DeliveryCreate,
    DeliveryView,
    DriverBrief,
    OrderEvent,
    RideCreate,
    RideView,
)
from rideflow.orders.states import STATUSES, STEPS, Kind, illegal_step_text
from rideflow.redis import keys
from rideflow.redis.clock import from_us
from rideflow.redis.scripts import Scripts, Store, Stored, parse_stored
from rideflow.schemas import Point


class Step(StrEnum):
    """What `order_transition.lua` did."""

    OK = "OK"
    ILLEGAL = "ILLEGAL"
    """Not a step the order's status allows; detail: that status."""
    NOT_YOURS = "NOT_YOURS"
    """Another driver holds the order; detail: that driver."""
    CHANGED = "CHANGED"
    """The order's driver or offer moved under the caller: read again and retry."""
    GONE = "GONE"


class Stepped(NamedTuple):
    """`order_transition.lua`'s reply: the outcome and its detail (the time in us when OK), and
    the offer the step withdrew ('' for none)."""

    outcome: Step
    detail: str = ""
    withdrawn: str = ""


def parse_stepped(reply: list[Any]) -> Stepped:
    """`order_transition.lua`'s reply, typed."""
    return Stepped(
        Step(reply[0]),
        str(reply[1]) if len(reply) > 1 else "",
        str(reply[2]) if len(reply) > 2 else "",
    )


class Orders:
    """The order store; one instance per process, shared by requests."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings, cities: CityMap):
        self.redis, self.scripts, self.settings, self.cities = redis, scripts, settings, cities

    def city_of_pickup(self, pickup: Point, field: str = "pickup") -> City:
        """The city whose service area holds the pickup, or a 422 that lists the areas."""
        city = self.cities.locate(pickup.lat, pickup.lng)
        if city is None:
            areas = "; ".join(area_text(c) for c in self.cities)
            raise Unprocessable(
                f"{pickup.lat}, {pickup.lng} is outside every service area ({areas})", field=field
            )
        return city

    async def enqueue(
        self,
        city: str,
        kind: Kind,
        fields: dict[str, str | int | float],
        *,
        idempotency: tuple[str, str] | None = None,
        direct: bool = False,
        replaces: str = "",
    ) -> Stored:
        """Store an order and queue it (or, `direct`, leave it to the caller to dispatch now) in
        one round trip. `idempotency` is (key, fingerprint); `replaces` names an earlier order
        that key may be moved off. Returns what was stored, or the order the key names."""
        order_id = f"{city}-{uuid.uuid4().hex}"
        script_keys = [
            keys.order(city, order_id),
            keys.requests(city),
            keys.order_events(city, order_id),
            keys.city_events(city),
            keys.retries(city),
        ]
        key, print_ = idempotency if idempotency else ("", "")
        if idempotency:
            script_keys.append(key)
        args: list[str | int | float] = [
            *self.settings.event_caps(),
            order_id,
            self.settings.deadline_ms(kind),
            "direct" if direct else "queue",
            self.settings.retry_lease_ms,
            IDEMPOTENCY_TTL_S,
            print_,
            replaces,
            "kind",
            kind,
            "window_ms",
            self.settings.offer_window_ms(kind),
        ]
        for name, value in fields.items():
            args.extend((name, value))
        return parse_stored(await self.scripts.order_enqueue(keys=script_keys, args=args))

    async def create_ride(
        self, body: RideCreate, idempotency_key: str | None = None
    ) -> tuple[str, str]:
        """Queue a ride; returns (ride id, city code). The same `Idempotency-Key` from the same
        rider returns the first ride; reused for a different request it is a conflict."""
        rider = named(body.rider_id, "rider_id")
        city = self.city_of_pickup(body.pickup)
        p, d = body.pickup, body.dropoff
        fields: dict[str, str | int | float] = {
            "customer": rider,
            "pickup": f"{p.lat},{p.lng}",
            "dropoff": f"{d.lat},{d.lng}",
            "strategy": body.strategy or city.strategy,
        }
        return await self._create(city.code, "ride", body, rider, fields, idempotency_key)

    async def create_delivery(
        self, body: DeliveryCreate, idempotency_key: str | None = None
    ) -> tuple[str, str]:
        """Queue a delivery; returns (delivery id, city code); idempotent like rides."""
        customer = named(body.customer_id, "customer_id")
        city = self.city_of_pickup(body.pickup)
        fields = delivery_fields(body.pickup, body.dropoff, body.strategy or city.strategy)
        fields["customer"] = customer
        if body.order_id:
            fields["ext_order"] = body.order_id
        if body.restaurant_id:
            fields["restaurant"] = body.restaurant_id
        if body.radius_km:
            fields["radius_m"] = body.radius_km * 1000
        if body.timeout_sec:
            fields["window_ms"] = body.timeout_sec * 1000
        return await self._create(city.code, "delivery", body, customer, fields, idempotency_key)

    async def _create(
        self,
        city: str,
        kind: Kind,
        body: RideCreate | DeliveryCreate,
        customer: str,
        fields: dict[str, str | int | float],
        idempotency_key: str | None,
    ) -> tuple[str, str]:
        """Queue a customer's order; the same `Idempotency-Key` from the same customer returns
        the first order, reused for a different request it is a conflict."""
        idem = None
        if idempotency_key is not None:
            key = keys.idempotency(city, f"customer:{customer}", idempotency_key)
            idem = (key, fingerprint(body.model_dump()))
        outcome, order_id = await self.enqueue(city, kind, fields, idempotency=idem)
        if outcome is Store.CONFLICT:
            raise Conflict(
                f"Idempotency-Key {idempotency_key!r} was already used for a different request "
                f"({kind} {order_id})"
            )
        return order_id, city

    def city_of(self, order_id: str, kind: Kind) -> str:
        """The city code an order id carries, or a 404."""
        code = order_id.partition("-")[0]
        if self.cities.get(code) is None:
            raise NotFound(f"no {kind} with id {order_id!r}")
        return code

    async def read(self, order_id: str, kind: Kind) -> tuple[str, dict[str, str]]:
        """(city, the order's hash) of an order of this kind, or a 404."""
        city = self.city_of(order_id, kind)
        h = cast(dict[str, str], await self.redis.hgetall(keys.order(city, order_id)))
        if h.get("kind") != kind:
            raise NotFound(f"no {kind} with id {order_id!r}")
        return city, h

    async def _common(self, city: str, h: dict[str, str]) -> dict[str, object]:
        driver = None
        if h.get("driver"):
            profile = await self.redis.hmget(
                keys.driver(city, h["driver"]), ["name", "rating", "vehicle"]
            )
            name, rating, vehicle = cast(list[str | None], profile)
            driver = DriverBrief(
                id=h["driver"], name=name or "", rating=float(rating or 0), vehicle=vehicle or ""
            )
        return {
            "city": city,
            "status": h["status"],
            "strategy": h.get("strategy", "nearest"),
            "pickup": point(h["pickup"]),
            "dropoff": point(h["dropoff"]) if h.get("dropoff") else None,
            "driver": driver,
            "offer_id": h.get("offer") or None,
            "pickup_distance_m": float(h["pickup_m"]) if h.get("pickup_m") else None,
            "attempts": int(h.get("attempts", 0)),
            "offers": int(h.get("offers", 0)),
            "reason": h.get("reason"),
            "created_at": from_us(h["t_QUEUED"]),
            "transitions": {s: from_us(h[f"t_{s}"]) for s in STATUSES if f"t_{s}" in h},
        }

    async def ride(self, ride_id: str) -> RideView:
        """A ride with its driver and the time of each transition."""
        city, h = await self.read(ride_id, "ride")
        common = await self._common(city, h)
        return RideView.model_validate({**common, "ride_id": ride_id, "rider_id": h["customer"]})

    async def delivery(self, delivery_id: str) -> DeliveryView:
        """A delivery with its driver and the time of each transition."""
        city, h = await self.read(delivery_id, "delivery")
        common = await self._common(city, h)
        return DeliveryView.model_validate(
            {
                **common,
                "delivery_id": delivery_id,
                "customer_id": h["customer"],
                "order_id": h.get("ext_order"),
                "restaurant_id": h.get("restaurant"),
            }
        )

    async def events(self, order_id: str, kind: Kind, after: str | None = None) -> list[OrderEvent]:
        """An order's transitions in order, or only those after the event id `after`."""
        city = self.city_of(order_id, kind)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.order(city, order_id), "kind")
            pipe.xrange(keys.order_events(city, order_id), min=f"({after}" if after else "-")
            stored_kind, entries = await pipe.execute()
        if stored_kind != kind:
            raise NotFound(f"no {kind} with id {order_id!r}")
        return [
            OrderEvent(
                id=event_id,
                status=f["status"],
                at=from_us(f["at"]),
                driver_id=f.get("driver") or None,
                offer_id=f.get("offer") or None,
                pickup_distance_m=float(f["pickup_m"]) if f.get("pickup_m") else None,
                reason=f.get("reason"),
            )
            for event_id, f in entries
        ]

    async def step(
        self, order_id: str, kind: Kind, action: str, driver_id: str | None = None
    ) -> None:
        """Make one step of the state machine; an illegal one is a 409 that says why.

        Driver steps name the driver, who must be the order's. A final step (complete,
        delivered, cancel) frees the driver at once, withdrawing a pending offer."""
        step = STEPS[action]
        city = self.city_of(order_id, kind)
        order_key = keys.order(city, order_id)
        # The driver can change between our read and the script (a dispatcher offering the order,
        # a driver rejecting it): the script refuses then, and we read again.
        for _ in range(5):
            reply = await self.redis.hmget(order_key, ["status", "driver", "offer", "kind"])
            status, driver, offer, stored_kind = cast(list[str | None], reply)
            if status is None or stored_kind != kind:
                raise NotFound(f"no {kind} with id {order_id!r}")
            script_keys = [
                order_key,
                keys.pool(city),
                keys.seen(city),
                keys.retries(city),
                keys.order_events(city, order_id),
                keys.city_events(city),
                keys.excluded(city, order_id),
            ]
            if driver:
                script_keys += [
                    keys.driver(city, driver),
                    keys.lease(city, driver),
                    keys.offer(city, offer or "none"),
                    keys.offers_due(city),
                    keys.leaderboard(city, utc_day()),
                ]
            reply = await self.scripts.order_transition(
                keys=script_keys,
                args=[
                    *self.settings.event_caps(),
                    order_id,
                    step.target,
                    ",".join(step.sources),
                    driver or "",
                    offer or "",
                    (driver_id or "") if step.by_driver else "",
                    "1" if step.final else "0",
                    self.settings.stale_ms,
                    self.settings.order_retention_s,
                    LEADERBOARD_TTL_S,
                ],
            )
            outcome, detail, withdrawn = parse_stepped(reply)
            if outcome is Step.OK:
                if withdrawn:
                    metrics.offer("withdrawn")
                return
            if outcome is Step.ILLEGAL:
                raise Conflict(illegal_step_text(kind, order_id, detail, action))
            if outcome is Step.NOT_YOURS:
                holder = detail or "no driver"
                raise Conflict(f"{kind} {order_id} is held by {holder}, not by {driver_id}")
            if outcome is Step.GONE:
                raise NotFound(f"no {kind} with id {order_id!r}")
        raise Conflict(f"{kind} {order_id} kept changing while being {step.verb}; retry")


LEADERBOARD_TTL_S = 2 * 86_400
"""A day's leaderboard is kept through the next day."""


def utc_day(at_s: float | None = None) -> str:
    """The UTC day (`YYYYMMDD`) of `at_s` (default: now): which leaderboard a trip counts on."""
    return time.strftime("%Y%m%d", time.gmtime(at_s))


def named(customer: str | None, field: str) -> str:
    """The customer an order is for; the API fills it in from the caller before it gets here."""
    if customer is None:
        raise Unprocessable("required: the customer this order is for", field=field)
    return customer


def delivery_fields(
    pickup: Point, dropoff: Point | None, strategy: str
) -> dict[str, str | int | float]:
    """The hash fields every delivery has."""
    fields: dict[str, str | int | float] = {
        "pickup": f"{pickup.lat},{pickup.lng}",
        "strategy": strategy,
    }
    if dropoff is not None:
        fields["dropoff"] = f"{dropoff.lat},{dropoff.lng}"
    return fields


def point(text: str) -> Point:
    """A point from its 'lat,lng' form in Redis."""
    lat, _, lng = text.partition(",")
    return Point(lat=float(lat), lng=float(lng))
