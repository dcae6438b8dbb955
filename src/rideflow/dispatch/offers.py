"""Offers: made to a reserved driver (`create`), answered with the offer's fencing token before
its deadline, or lapsing when the dispatchers sweep the deadline set. An offer whose key was lost
is repaired by the sweep."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, cast

from redis.asyncio import Redis

from rideflow.cities import CityMap
from rideflow.config import Settings
from rideflow.dispatch.matcher import Candidate
from rideflow.dispatch.schemas import OfferAnswered, OfferStatus, OfferView
from rideflow.errors import Conflict, NotFound
from rideflow.metrics import families as metrics
from rideflow.orders.states import OrderStatus
from rideflow.orders.store import point
from rideflow.redis import keys
from rideflow.redis.clock import from_ms, from_us
from rideflow.redis.scripts import Scripts

ACTIONS = ("accept", "reject")


def order_of(offer_id: str) -> str:
    """The order an offer id belongs to: offer ids are `<order id>-<suffix>`."""
    return offer_id.rpartition("-")[0]


@dataclass(frozen=True, slots=True)
class Offered:
    """The offer made to the reserved driver, with their profile."""

    offer_id: str
    token: int
    deadline_ms: int
    name: str
    rating: float
    vehicle: str


class Reservation(StrEnum):
    """What `offer_create.lua` did."""

    OFFERED = "OFFERED"
    NONE = "NONE"
    """No candidate was eligible."""
    LATE = "LATE"
    """The order's search deadline has passed; nothing was booked."""
    NOT_SEARCHING = "NOT_SEARCHING"
    """The order moved on; its entry was acknowledged."""


class Reserved(NamedTuple):
    """`offer_create.lua`'s reply: the offer and which candidate took it (0-based position in
    the ranking), when it was made and since when the order was searching (epoch us text), or
    the order's status when it is no longer searching."""

    outcome: Reservation
    offer: Offered | None = None
    candidate: int = -1
    status: str = ""
    at: str = ""
    searching_since: str = ""


def parse_reserved(reply: list[Any], offer_id: str) -> Reserved:
    """`offer_create.lua`'s reply, typed."""
    outcome = Reservation(reply[0])
    if outcome is Reservation.OFFERED:
        _, index, at, token, deadline, name, rating, vehicle, since = reply
        offer = Offered(offer_id, int(token), int(deadline), name, float(rating or 0), vehicle)
        return Reserved(outcome, offer, int(index) - 1, at=str(at), searching_since=str(since))
    if outcome is Reservation.NOT_SEARCHING:
        return Reserved(outcome, status=str(reply[1]))
    return Reserved(outcome)


class Answer(StrEnum):
    """Outcomes of `offer_accept.lua` and `offer_release.lua`: settled, then refused."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    REPAIRED = "REPAIRED"
    """The offer's hash was lost; its order went back to searching and its driver was freed."""
    GONE = "GONE"
    NOT_YOURS = "NOT_YOURS"
    STALE_TOKEN = "STALE_TOKEN"
    ANSWERED = "ANSWERED"
    NOT_DUE = "NOT_DUE"
    LATE = "LATE"


SETTLED = frozenset({Answer.ACCEPTED, Answer.REJECTED, Answer.EXPIRED, Answer.REPAIRED})


class Answered(NamedTuple):
    """An answer script's reply: `at` (epoch us text) when settled; `detail` is 'offline' or
    'replay' for a settled answer, and the driver, token, status or deadline a refusal names;
    `offered_at` (epoch us text) is when an offer accepted just now was made."""

    outcome: Answer
    at: str = ""
    detail: str = ""
    offered_at: str = ""


def parse_answered(reply: list[Any]) -> Answered:
    """`offer_accept.lua`'s or `offer_release.lua`'s reply, typed."""
    outcome = Answer(reply[0])
    if outcome in SETTLED:
        offered_at = str(reply[3]) if len(reply) > 3 else ""
        return Answered(outcome, str(reply[1]), str(reply[2]), offered_at)
    return Answered(outcome, detail=str(reply[1]) if len(reply) > 1 else "")


OUTCOME_NAMES = {
    Answer.ACCEPTED: "accepted",
    Answer.REJECTED: "rejected",
    Answer.EXPIRED: "lapsed",
    Answer.REPAIRED: "lost",
}
"""A settled answer as `rideflow_offers_total` names its outcome."""


def count_answer(answered: Answered) -> Answered:
    """Count an offer settled just now (not a replayed answer, nor a refusal) in the metrics;
    an acceptance also times the offered -> accepted stage."""
    name = OUTCOME_NAMES.get(answered.outcome)
    if name is not None and answered.detail != "replay":
        metrics.offer(name)
        if answered.outcome is Answer.ACCEPTED:
            metrics.stage("offered_to_accepted", answered.offered_at, answered.at)
    return answered


class Offers:
    """Makes, reads and answers offers; one instance per process."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings, cities: CityMap):
        self.redis, self.scripts, self.settings, self.cities = redis, scripts, settings, cities

    async def create(
        self, city: str, order_id: str, entry_id: str, ranked: list[Candidate]
    ) -> Reserved:
        """Reserve the first eligible of `ranked` (best first) and offer them the order, in one
        step that also acknowledges the order's entry (`entry_id`, or '' from the retry set)."""
        offer_id = f"{order_id}-{secrets.token_hex(4)}"
        args: list[str | float] = [
            *self.settings.event_caps(),
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
        reserved = parse_reserved(reply, offer_id)
        if reserved.outcome is Reservation.OFFERED:
            metrics.offer("offered")
            metrics.stage("searching_to_offered", reserved.searching_since, reserved.at)
        return reserved

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

    async def answer(
        self, offer_id: str, action: str, driver_id: str, token: int, *, mine_only: bool = False
    ) -> OfferAnswered:
        """Accept or reject an offer as `driver_id` with the offer's fencing token. Refused with
        a 409 that says why: another driver's offer, a stale token, already answered, or too
        late (the offer lapses then and the order moves on). With `mine_only` (a driver
        answering for themself) another driver's offer is a 404, as an unknown one: the script
        checks the driver before anything else, so nothing about it is revealed."""
        city = self._city(offer_id)
        if action == "accept":
            answered = await self._accept(city, offer_id, driver_id, str(token))
            if answered.outcome is Answer.LATE:
                # Past the deadline: this answer lets the offer lapse itself, so the order
                # moves on even when every sweeper is down.
                answered = await self._release(city, offer_id, "expire", driver_id)
                if answered.outcome is Answer.EXPIRED:
                    answered = answered._replace(outcome=Answer.LATE)
        else:
            answered = await self._release(city, offer_id, "reject", driver_id, str(token))
            if answered.outcome is Answer.EXPIRED:
                answered = answered._replace(outcome=Answer.LATE)
        outcome = answered.outcome
        if outcome is Answer.GONE:
            raise NotFound(f"no offer with id {offer_id!r}")
        if outcome is Answer.NOT_YOURS:
            if mine_only:
                raise NotFound(f"no offer with id {offer_id!r}")
            raise Conflict(
                f"offer {offer_id} was made to driver {answered.detail}, not {driver_id}"
            )
        if outcome is Answer.STALE_TOKEN:
            raise Conflict(
                f"token {token} is not the fencing token of offer {offer_id} (stale or wrong)"
            )
        if outcome is Answer.ANSWERED:
            raise Conflict(f"offer {offer_id} is already {answered.detail}")
        if outcome is Answer.LATE:
            raise Conflict(
                f"offer {offer_id} expired before it was answered; the order has moved on"
            )
        if outcome not in (Answer.ACCEPTED, Answer.REJECTED):
            raise Conflict(f"offer {offer_id} could not be answered ({outcome.value}); retry")
        order_id = order_of(offer_id)
        order_status = await self.redis.hget(keys.order(city, order_id), "status")
        return OfferAnswered(
            offer_id=offer_id,
            order_id=order_id,
            status=cast(OfferStatus, outcome.value),
            order_status=cast(OrderStatus, order_status or "SEARCHING"),
            at=from_us(answered.at),
        )

    async def decline(self, city: str, driver_id: str, offer_id: str, reason: str) -> None:
        """Reject a driver's pending offer on their behalf (they went offline), so the order
        moves on at once instead of waiting out the window."""
        token = await self.redis.hget(keys.offer(city, offer_id), "token")
        if token is not None:
            await self._release(city, offer_id, "reject", driver_id, str(token), reason)

    async def expire(self, city: str, offer_id: str) -> Answered:
        """Let a due offer lapse (the sweeper's call). An offer whose hash is gone while its
        order still waits on it is repaired: the order searches again, the driver is freed."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.offer(city, offer_id), "driver")
            pipe.hmget(keys.order(city, order_of(offer_id)), ["driver", "offer"])
            offered_to, (order_driver, order_offer) = await pipe.execute()
        driver = offered_to or (order_driver if order_offer == offer_id else None)
        if not driver:
            await self.redis.zrem(keys.offers_due(city), offer_id)
            return Answered(Answer.GONE)
        return await self._release(city, offer_id, "expire", str(driver))

    async def _accept(self, city: str, offer_id: str, driver_id: str, token: str) -> Answered:
        order_id = order_of(offer_id)
        reply = await self.scripts.offer_accept(
            keys=[
                keys.offer(city, offer_id),
                keys.order(city, order_id),
                keys.driver(city, driver_id),
                keys.lease(city, driver_id),
                keys.offers_due(city),
                keys.order_events(city, order_id),
                keys.city_events(city),
            ],
            args=[*self.settings.event_caps(), offer_id, driver_id, token],
        )
        return count_answer(parse_answered(reply))

    async def _release(
        self,
        city: str,
        offer_id: str,
        action: str,
        driver_id: str,
        token: str = "",
        reason: str = "",
    ) -> Answered:
        order_id = order_of(offer_id)
        reply = await self.scripts.offer_release(
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
                *self.settings.event_caps(),
                action,
                offer_id,
                driver_id,
                token,
                self.settings.stale_ms,
                self.settings.max_lapses,
                self.settings.order_retention_s,
                reason,
            ],
        )
        return count_answer(parse_answered(reply))
