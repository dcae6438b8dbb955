"""Offers: a reserved driver's chance to take an order, answered with the offer's fencing token
before its deadline, or lapsing when the dispatchers sweep the deadline set."""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from rideflow.cities import CityMap
from rideflow.config import Settings
from rideflow.dispatch.schemas import OfferAnswered, OfferView
from rideflow.errors import Conflict, NotFound
from rideflow.orders.store import point
from rideflow.redis import keys
from rideflow.redis.clock import from_ms, from_us
from rideflow.redis.scripts import Scripts

ACTIONS = ("accept", "reject")


def order_of(offer_id: str) -> str:
    """The order an offer id belongs to: offer ids are `<order id>-<suffix>`."""
    return offer_id.rpartition("-")[0]


class Offers:
    """Reads and answers offers; one instance per process."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings, cities: CityMap):
        self.redis, self.scripts, self.settings, self.cities = redis, scripts, settings, cities

    def _city(self, offer_id: str) -> str:
        code = offer_id.partition("-")[0]
        if self.cities.get(code) is None or not order_of(offer_id):
            raise NotFound(f"no offer with id {offer_id!r}")
        return code

    async def get(self, offer_id: str) -> OfferView:
        """One offer, whatever became of it."""
        view = await self._view(self._city(offer_id), offer_id)
        if view is None:
            raise NotFound(f"no offer with id {offer_id!r}")
        return view

    async def _view(self, city: str, offer_id: str) -> OfferView | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.offer(city, offer_id))
            pipe.hmget(keys.order(city, order_of(offer_id)), ["kind", "pickup", "dropoff"])
            offer, (kind, pickup, dropoff) = await pipe.execute()
        o = cast(dict[str, str], offer)
        if not o or pickup is None:
            return None
        return OfferView(
            offer_id=offer_id,
            order_id=o["order"],
            kind=kind,
            driver_id=o["driver"],
            token=int(o["token"]),
            status=o["status"],
            pickup=point(pickup),
            dropoff=point(dropoff) if dropoff else None,
            pickup_distance_m=float(o["pickup_m"]),
            created_at=from_us(o["created"]),
            expires_at=from_ms(o["deadline"]),
        )

    async def pending_for(self, city: str, driver_id: str) -> list[OfferView]:
        """The driver's pending offer, if any; there is never more than one."""
        offer_id = cast(str | None, await self.redis.hget(keys.driver(city, driver_id), "offer"))
        if not offer_id:
            return []
        view = await self._view(city, offer_id)
        return [view] if view is not None and view.status == "PENDING" else []

    async def answer(self, offer_id: str, action: str, driver_id: str, token: int) -> OfferAnswered:
        """Accept or reject an offer as `driver_id` with the offer's fencing token. Refused with
        a 409 that says why: another driver's offer, a stale token, already answered, or too
        late (the offer lapses then and the order moves on)."""
        city = self._city(offer_id)
        reply = await self._settle(city, offer_id, action, driver_id, str(token))
        outcome = reply[0]
        if outcome == "GONE":
            raise NotFound(f"no offer with id {offer_id!r}")
        if outcome == "NOT_YOURS":
            raise Conflict(f"offer {offer_id} was made to driver {reply[1]}, not {driver_id}")
        if outcome == "STALE_TOKEN":
            raise Conflict(
                f"token {token} is not the fencing token of offer {offer_id} (stale or wrong)"
            )
        if outcome == "ANSWERED":
            raise Conflict(f"offer {offer_id} is already {reply[1]}")
        if outcome == "EXPIRED" and action != "expire":
            raise Conflict(
                f"offer {offer_id} expired before it was answered; the order has moved on"
            )
        order_id = order_of(offer_id)
        order_status = await self.redis.hget(keys.order(city, order_id), "status")
        return OfferAnswered(
            offer_id=offer_id,
            order_id=order_id,
            status=outcome,
            order_status=cast(str, order_status or "SEARCHING"),
            at=from_us(reply[1]),
        )

    async def decline(self, city: str, driver_id: str, offer_id: str, reason: str) -> None:
        """Reject a driver's pending offer on their behalf (they went offline), so the order
        moves on at once instead of waiting out the window."""
        token = await self.redis.hget(keys.offer(city, offer_id), "token")
        if token is not None:
            await self._settle(city, offer_id, "reject", driver_id, str(token), reason)

    async def expire(self, city: str, offer_id: str) -> list[str]:
        """Let a due offer lapse (the sweeper's call); returns the script's reply."""
        driver = cast(str | None, await self.redis.hget(keys.offer(city, offer_id), "driver"))
        if driver is None:
            await self.redis.zrem(keys.offers_due(city), offer_id)
            return ["GONE"]
        return await self._settle(city, offer_id, "expire", driver, "")

    async def _settle(
        self, city: str, offer_id: str, action: str, driver_id: str, token: str, reason: str = ""
    ) -> list[str]:
        order_id = order_of(offer_id)
        reply: list[str] = await self.scripts.offer_answer(
            keys=[
                keys.offer(city, offer_id),
                keys.order(city, order_id),
                keys.driver(city, driver_id),
                keys.lease(city, driver_id),
                keys.offers_due(city),
                keys.pool(city),
                keys.seen(city),
                keys.excluded(city, order_id),
                keys.requests(city),
                keys.order_events(city, order_id),
                keys.city_events(city),
            ],
            args=[
                action,
                offer_id,
                driver_id if action != "expire" else "",
                token,
                self.settings.stale_ms,
                self.settings.max_lapses,
                self.settings.order_retention_s,
                reason,
            ],
        )
        return reply
