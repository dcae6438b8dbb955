"""The synchronous delivery assignment of the delivery-assignment service (`POST
/v1/delivery/assign`): store the delivery, find and reserve a driver, offer them the order, and
answer with the driver, all within the request. Idempotent by the merchant's `order_id`."""

from __future__ import annotations

import math
import time
from typing import cast

from redis.asyncio import Redis

from rideflow.dispatch.matcher import Candidate, eta_s
from rideflow.dispatch.schemas import AssignedDriver, AssignRequest, AssignResponse, PartnerInfo
from rideflow.dispatch.service import Dispatcher
from rideflow.errors import Conflict, NoDriverFound
from rideflow.idempotency import fingerprint
from rideflow.orders.states import ASSIGNED, RETRYABLE
from rideflow.orders.store import Orders, delivery_fields
from rideflow.redis import keys
from rideflow.redis.clock import from_ms
from rideflow.redis.scripts import Store


class Assigner:
    """Runs `POST /v1/delivery/assign`; one instance per API process."""

    def __init__(self, redis: Redis, orders: Orders, dispatcher: Dispatcher) -> None:
        self.redis, self.orders, self.dispatcher = redis, orders, dispatcher

    async def assign(self, body: AssignRequest, started: float) -> AssignResponse:
        """Offer the order to the best driver within `radius_km`, or say there is none (404).

        The same `order_id` again: the same delivery while it is offered; 409 once a driver
        accepted it or while it is being re-dispatched; a fresh attempt when the last one found
        no driver or was cancelled. The same `order_id` with a different body: 409."""
        city = self.orders.city_of_pickup(body.location, field="location")
        fields = delivery_fields(body.location, None, body.strategy or city.strategy)
        fields |= {
            "customer": body.restaurant_id,
            "restaurant": body.restaurant_id,
            "ext_order": body.order_id,
            "radius_m": body.radius_km * 1000,
            "window_ms": body.timeout_sec * 1000,
        }
        idem = (
            keys.idempotency(city.code, "assign:", body.order_id),
            fingerprint(body.model_dump()),
        )
        replaces = ""
        for _ in range(3):
            created, delivery_id = await self.orders.enqueue(
                city.code, "delivery", fields, idempotency=idem, direct=True, replaces=replaces
            )
            if created is Store.CREATED:
                break
            if created is Store.CONFLICT:
                raise Conflict(
                    f"order_id {body.order_id} was already used with a different request "
                    f"(delivery {delivery_id})"
                )
            earlier = await self._earlier(city.code, delivery_id, body.order_id, started)
            if earlier is not None:
                return earlier
            replaces = delivery_id
        else:
            raise Conflict(f"order {body.order_id} kept changing; retry")
        outcome = await self.dispatcher.handle(city.code, delivery_id, once=True)
        if outcome.status == "OFFERED" and outcome.offer is None:
            # Offered meanwhile by a dispatcher (this request's reply was slow): that offer.
            earlier = await self._earlier(city.code, delivery_id, body.order_id, started)
            if earlier is not None:
                return earlier
        if outcome.driver is None or outcome.offer is None:
            if outcome.status == "NO_DRIVER_FOUND":
                raise NoDriverFound(
                    f"no available driver within {body.radius_km:g} km of "
                    f"{body.location.lat}, {body.location.lng}",
                    delivery_id=delivery_id,
                )
            raise Conflict(f"delivery {delivery_id} is {outcome.status}", delivery_id=delivery_id)
        o = outcome.offer
        return self._response(
            city.code,
            delivery_id,
            outcome.driver,
            o.name,
            o.rating,
            o.vehicle,
            o.deadline_ms,
            started,
        )

    async def _earlier(
        self, city: str, delivery_id: str, order_id: str, started: float
    ) -> AssignResponse | None:
        """The answer for an order_id seen before, or None when a new attempt should be made."""
        h = cast(dict[str, str], await self.redis.hgetall(keys.order(city, delivery_id)))
        status = h.get("status")
        if status is None or status in RETRYABLE:
            return None
        if status == "OFFERED":
            driver_id = h["driver"]
            profile = await self.redis.hmget(
                keys.driver(city, driver_id), ["name", "rating", "vehicle"]
            )
            name, rating, vehicle = cast(list[str | None], profile)
            deadline = await self.redis.hget(keys.offer(city, h["offer"]), "deadline")
            return self._response(
                city,
                delivery_id,
                Candidate(driver_id, float(h.get("pickup_m") or 0)),
                name or "",
                float(rating or 0),
                vehicle or "",
                int(deadline or 0),
                started,
            )
        if status in ASSIGNED:
            raise Conflict(
                f"order {order_id} is already assigned: delivery {delivery_id} is {status} "
                f"with driver {h.get('driver')}",
                delivery_id=delivery_id,
            )
        raise Conflict(
            f"order {order_id} is being dispatched (delivery {delivery_id} is {status}): retry "
            f"shortly, or follow GET /v1/deliveries/{delivery_id}",
            delivery_id=delivery_id,
        )

    def _response(
        self,
        city: str,
        delivery_id: str,
        driver: Candidate,
        name: str,
        rating: float,
        vehicle: str,
        deadline_ms: int,
        started: float,
    ) -> AssignResponse:
        eta = eta_s(driver, self.orders.settings.city_speed_mps[city])
        return AssignResponse(
            delivery_id=delivery_id,
            status="OFFERED",
            driver=AssignedDriver(
                id=driver.driver_id,
                name=name,
                rating=rating,
                distance_km=round(driver.distance_m / 1000, 2),
                eta_min=max(1, math.ceil(eta / 60)),
            ),
            partner_info=PartnerInfo(vehicle=vehicle),
            offer_expires_at=from_ms(deadline_ms),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )
