"""The built-in tasks. Each is idempotent by job id, as every task must be: a job whose worker
died is run again."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Protocol, cast

from pydantic import Field

from rideflow.config import Settings
from rideflow.jobs.registry import REGISTRY, JobContext
from rideflow.orders.states import DONE
from rideflow.redis import keys
from rideflow.schemas import ID_PATTERN, Body

log = logging.getLogger("rideflow.jobs.tasks")


class EmailSender(Protocol):
    """Where `send_email` hands messages; replace `SENDER` to send for real."""

    async def send(self, to: str, subject: str, body: str, message_id: str) -> None: ...


class LogSender:
    """Logs each message instead of sending it."""

    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        log.info("email %s to %s: %s", message_id, to, subject)


class Mailer:
    """Holds the sender `send_email` and `trip_receipt` use; `MAILER.sender = ...` to change it.
    Unset, `Settings.email_transport` chooses: the development outbox (a file per message under
    `<data_dir>/outbox/`) or a log line."""

    def __init__(self) -> None:
        self.sender: EmailSender | None = None

    def sender_for(self, settings: Settings) -> EmailSender:
        if self.sender is not None:
            return self.sender
        if settings.email_transport == "outbox":
            from rideflow.jobs.outbox import Outbox

            return Outbox(Path(settings.data_dir) / "outbox")
        return LOG_SENDER


LOG_SENDER = LogSender()
MAILER = Mailer()


class SendEmail(Body):
    to: str = Field(default="customer@example.com", pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)
    subject: str = Field(default="Hello from RideFlow", max_length=200)
    body: str = Field(default="", max_length=10_000)


@REGISTRY.task("send_email", SendEmail)
async def send_email(payload: SendEmail, ctx: JobContext) -> dict[str, Any]:
    """Send an email through the configured sender (the development outbox by default)."""
    # The job id is the message id: a mail server deduplicates a message sent twice.
    sender = MAILER.sender_for(ctx.settings)
    await sender.send(payload.to, payload.subject, payload.body, ctx.job_id)
    return {"to": payload.to, "message_id": ctx.job_id}


class TripReceipt(Body):
    order_id: str = Field(min_length=1, max_length=96, pattern=ID_PATTERN)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)


@REGISTRY.task("trip_receipt", TripReceipt)
async def trip_receipt(payload: TripReceipt, ctx: JobContext) -> dict[str, Any]:
    """Compose the receipt of a finished ride or delivery and email it to the customer."""
    city = payload.order_id.partition("-")[0]
    order = cast(dict[str, str], await ctx.redis.hgetall(keys.order(city, payload.order_id)))
    if not order:
        raise LookupError(f"no order {payload.order_id}")
    if order["status"] not in (*DONE, "CANCELLED"):
        raise RuntimeError(f"order {payload.order_id} is {order['status']}, not finished yet")
    receipt = {
        "order_id": payload.order_id,
        "kind": order.get("kind", "ride"),
        "status": order["status"],
        "customer": order.get("customer"),
        "driver": order.get("driver") or None,
        "pickup": order.get("pickup"),
        "dropoff": order.get("dropoff"),
    }
    to = payload.email or f"{order.get('customer', 'customer')}@customers.rideflow.invalid"
    lines = "\n".join(f"{k}: {v}" for k, v in receipt.items())
    await MAILER.sender_for(ctx.settings).send(
        to, f"Your receipt for {payload.order_id}", lines, ctx.job_id
    )
    return receipt


RATING_PRIOR_WEIGHT = 5
"""How many ratings the rating a driver registered with counts as: a new 5.0 driver's first
rating of 1 makes them (5 x 5 + 1) / 6 = 4.33, not 1.0."""


class DriverRating(Body):
    driver_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    rating: float = Field(ge=1, le=5)


@REGISTRY.task("update_driver_rating", DriverRating)
async def update_driver_rating(payload: DriverRating, ctx: JobContext) -> dict[str, Any]:
    """Fold one rating into the driver's average (the registered rating a prior), once per job."""
    city = cast(str | None, await ctx.redis.hget(keys.DRIVER_DIRECTORY, payload.driver_id))
    if city is None:
        raise LookupError(f"no driver {payload.driver_id}")
    reply = await ctx.scripts.driver_rate(
        keys=[keys.driver(city, payload.driver_id), keys.driver_ratings(city, payload.driver_id)],
        args=[ctx.job_id, payload.rating, ctx.settings.job_result_ttl_s, RATING_PRIOR_WEIGHT],
    )
    if reply[0] == -1:
        raise LookupError(f"no driver {payload.driver_id}")
    return {"driver_id": payload.driver_id, "rating": float(reply[1]), "ratings": int(reply[2])}


class Purge(Body):
    pass


@REGISTRY.task("purge_expired", Purge)
async def purge_expired(payload: Purge, ctx: JobContext) -> dict[str, int]:
    """Forget finished jobs past their retention in the status indexes (their hashes expire)."""
    from rideflow.jobs.store import purge

    return await purge(ctx.redis, ctx.settings)


class Flaky(Body):
    fail_rate: float | None = Field(
        default=None, ge=0, le=1, description="Chance each attempt fails; the configured rate"
    )
    fail_times: int | None = Field(
        default=None, ge=0, le=100, description="Fail exactly the first N attempts instead"
    )


class FlakyError(RuntimeError):
    """What `flaky` raises."""


@REGISTRY.task("flaky", Flaky)
async def flaky(payload: Flaky, ctx: JobContext) -> dict[str, Any]:
    """Fail at random (or the first N attempts) to show retries."""
    if payload.fail_times is not None:
        if ctx.attempt <= payload.fail_times:
            raise FlakyError(f"attempt {ctx.attempt} fails on purpose")
    elif random.random() < (
        ctx.settings.flaky_fail_rate if payload.fail_rate is None else payload.fail_rate
    ):
        raise FlakyError(f"attempt {ctx.attempt} failed at random")
    return {"attempt": ctx.attempt}
