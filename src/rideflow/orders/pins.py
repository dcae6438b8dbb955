"""Trip PINs (seeds/001's OTP): the 4-digit code a customer gives their driver at the pickup
(rides) or the drop-off (deliveries), without which the driver cannot make that step.

The code is derived, not stored: HMAC-SHA256 under a key of its own (itself derived from the
signing secret) of the order and the offer it was accepted on, reduced to four digits. The
customer's read of their order derives it again, the driver's step derives it to compare (in
constant time), and Redis holds no code at all: a stored hash of a 4-digit code would be
reversed by trying all 10,000. Redis holds only the count of wrong codes: five within the
window lock the step for five minutes (429 with `Retry-After`), and the order's stream records
`PIN_LOCKED`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import NamedTuple, cast

from redis.asyncio import Redis

from rideflow.auth.secret import jwt_secret
from rideflow.config import Settings
from rideflow.errors import RideflowError, Unprocessable
from rideflow.orders.states import Kind
from rideflow.redis import keys
from rideflow.redis.scripts import ORDER_EVENTS_CAP, Scripts

DIGITS = 4
MISSES = 5
LOCK_MS = 5 * 60 * 1000
STEP = {"ride": "picked-up", "delivery": "delivered"}
"""The step each kind of order takes only with the PIN."""


class PinLocked(RideflowError):
    status = 429
    title = "Too many wrong trip PINs"


class PinCheck(NamedTuple):
    outcome: str  # OK | WRONG | LOCKED
    value: int  # misses left (WRONG), ms until unlocked (LOCKED)


class TripPins:
    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings) -> None:
        self.redis, self.scripts, self.settings = redis, scripts, settings

    @functools.cached_property
    def key(self) -> bytes:
        """The PIN key, from the signing secret (read when first needed: processes that never
        see a PIN, the dispatchers, need no secret)."""
        secret = jwt_secret(self.settings)
        return hmac.new(secret, b"rideflow trip pins v1", hashlib.sha256).digest()

    def pin(self, order_id: str, offer_id: str) -> str:
        """The order's code, for the assignment made by `offer_id`."""
        mac = hmac.new(self.key, f"{order_id}\x00{offer_id}".encode(), hashlib.sha256).digest()
        return f"{int.from_bytes(mac[:8], 'big') % 10**DIGITS:0{DIGITS}d}"

    @staticmethod
    def shown(kind: str, status: str) -> bool:
        """Whether an order of `kind` in `status` has a code its customer still needs: from
        ACCEPTED until the step that takes it (the pickup of a ride, a delivery's drop-off)."""
        live = ("ACCEPTED", "DRIVER_ARRIVING") + (("PICKED_UP",) if kind == "delivery" else ())
        return status in live

    async def current(self, city: str, order_id: str) -> str | None:
        """The code of the order's assignment while its customer needs it, else None."""
        reply = await self.redis.hmget(keys.order(city, order_id), ["kind", "status", "offer"])
        kind, status, offer = cast(list[str | None], reply)
        if not (kind and status and offer) or not self.shown(kind, status):
            return None
        return self.pin(order_id, offer)

    async def check_step(self, city: str, order_id: str, presented: str | None) -> None:
        """`check` for the order's current assignment."""
        offer = cast(str | None, await self.redis.hget(keys.order(city, order_id), "offer"))
        await self.check(city, order_id, offer or "", presented)

    async def check(self, city: str, order_id: str, offer_id: str, presented: str | None) -> None:
        """Let the step through when `presented` is the code; a wrong or missing code is a 422
        that says how many tries are left, and the fifth wrong one locks the step (429)."""
        if presented is None:
            raise Unprocessable("this step needs the trip PIN the customer was given", field="pin")
        right = hmac.compare_digest(presented.encode(), self.pin(order_id, offer_id).encode())
        reply = await self.scripts.trip_pin_check(
            keys=[keys.trip_pin_misses(city, order_id), keys.order_events(city, order_id)],
            args=[ORDER_EVENTS_CAP, order_id, 1 if right else 0, MISSES, LOCK_MS],
        )
        result = PinCheck(str(reply[0]), int(reply[1]))
        if result.outcome == "OK":
            return
        if result.outcome == "WRONG":
            raise Unprocessable(
                f"wrong trip PIN; {result.value} tries left before the step locks", field="pin"
            )
        retry_s = max(1, -(-result.value // 1000))
        raise PinLocked(
            f"{MISSES} wrong trip PINs: this step is locked; retry in {retry_s} s",
            retry_after=retry_s,
        )


def needs_pin(kind: Kind, action: str) -> bool:
    return STEP.get(kind) == action
