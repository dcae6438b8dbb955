"""A lost key heals itself: an offer whose hash or lease disappears before its deadline no longer
strands its order and its driver. A dispatcher runs in-process and sweeps as in production."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.dispatch.audit import audit
from rideflow.drivers.schemas import DriverCreate, DriverLocation
from rideflow.orders.schemas import RideCreate
from rideflow.redis import keys
from rideflow.schemas import Point
from rideflow.services import Services, build_services
from rideflow.workers.dispatcher import DispatcherWorker
from tests.conftest import BLR, offset
from tests.servers import eventually


@pytest.fixture
async def fast(settings: Settings, redis: Redis) -> AsyncIterator[tuple[Settings, Services]]:
    """Short offer windows, a dispatcher running, and two drivers near the centre."""
    settings = settings.model_copy(update={"ride_offer_window_s": 0.4, "ride_deadline_s": 30.0})
    svc = build_services(settings, redis)
    for name, north in (("near", 100), ("far", 900)):
        await svc.drivers.create(DriverCreate(id=name, name=name, rating=4.5, vehicle="KA01"))
        lat, lng = offset(*BLR, north_m=north)
        await svc.drivers.record_one(DriverLocation(driver_id=name, lat=lat, lng=lng))
        await svc.drivers.set_status(name, "online")
    stop = asyncio.Event()
    worker = DispatcherWorker(settings, ["blr"], concurrency=2, grace_s=1)
    task = asyncio.create_task(worker.run(stop))
    yield settings, svc
    stop.set()
    await task


async def ride(svc: Services) -> str:
    body = RideCreate(
        rider_id="rider-1",
        pickup=Point(lat=BLR[0], lng=BLR[1]),
        dropoff=Point(lat=BLR[0] + 0.02, lng=BLR[1] + 0.01),
    )
    ride_id, _ = await svc.orders.create_ride(body)
    return ride_id


async def offered_to(redis: Redis, ride_id: str) -> tuple[str, str] | None:
    """(driver, offer) once the ride is OFFERED."""
    status, driver, offer = await redis.hmget(
        keys.order("blr", ride_id), ["status", "driver", "offer"]
    )
    return (driver, offer) if status == "OFFERED" else None


async def test_an_offer_whose_hash_is_lost_sends_its_order_back_and_frees_the_driver(
    fast: tuple[Settings, Services], redis: Redis
) -> None:
    _, svc = fast
    ride_id = await ride(svc)
    driver, offer = await eventually(lambda: offered_to(redis, ride_id), 10, "the first offer")
    assert driver == "near"
    await redis.delete(keys.offer("blr", offer))  # evicted, or deleted by hand

    async def re_offered() -> tuple[str, str] | None:
        now = await offered_to(redis, ride_id)
        return now if now is not None and now[1] != offer else None

    again, second = await eventually(re_offered, 10, "the order to be offered again")
    # Not excluded (losing the key was not the driver's doing): the nearest is offered it again.
    assert again == "near"
    reasons = [
        (f["status"], f.get("outcome"), f.get("reason"))
        for _, f in await redis.xrange(keys.order_events("blr", ride_id))
    ]
    assert reasons[-2:] == [
        ("SEARCHING", "LOST", "the offer to driver near was lost before it was answered"),
        ("OFFERED", None, None),
    ]
    assert await redis.hget(keys.driver("blr", "near"), "lapses") == "0"
    assert not await redis.sismember(keys.excluded("blr", ride_id), "near")
    # The second offer is whole; answering it ends the repair's story cleanly.
    view = await svc.offers.get(second)
    answered = await svc.offers.answer(second, "accept", "near", view.token)
    assert answered.order_status == "ACCEPTED"
    assert await audit(redis, ["blr"]) == []


async def test_an_offer_whose_lease_is_lost_lapses_at_its_deadline_and_moves_on(
    fast: tuple[Settings, Services], redis: Redis
) -> None:
    _, svc = fast
    ride_id = await ride(svc)
    driver, offer = await eventually(lambda: offered_to(redis, ride_id), 10, "the first offer")
    await redis.delete(keys.lease("blr", driver))
    assert await audit(redis, ["blr"]) == [
        f"blr: offer {offer} is pending but driver {driver} holds no lease"
    ]
    far, _ = await eventually(lambda: offered_to_other(redis, ride_id, driver), 10, "next driver")
    assert far == "far"
    last = [f for _, f in await redis.xrange(keys.order_events("blr", ride_id))][-2]
    assert (last["status"], last["outcome"]) == ("SEARCHING", "EXPIRED")
    assert last["reason"] == f"the offer to driver {driver} lapsed unanswered"
    freed = await redis.hmget(keys.driver("blr", driver), ["order", "offer"])
    assert freed == ["", ""]
    assert await redis.zscore(keys.pool("blr"), driver) is not None
    assert await audit(redis, ["blr"]) == []


async def offered_to_other(redis: Redis, ride_id: str, driver: str) -> tuple[str, str] | None:
    now = await offered_to(redis, ride_id)
    return now if now is not None and now[0] != driver else None


def test_a_retention_not_longer_than_an_offer_and_its_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="must exceed the longest offer window"):
        Settings(order_retention_s=5)
    with pytest.raises(ValueError, match="must exceed the longest offer window"):
        Settings(order_retention_s=35, delivery_offer_window_s=30, offer_lease_grace_ms=5_000)
    assert Settings(order_retention_s=36).order_retention_s == 36
