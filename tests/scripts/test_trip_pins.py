"""Trip PINs: the code derived per assignment, the check's misses, the lock and its event."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from rideflow.errors import Unprocessable
from rideflow.orders.pins import LOCK_MS, MISSES, PinLocked, TripPins
from rideflow.redis import keys
from rideflow.redis.scripts import Scripts
from tests.conftest import settings_for
from tests.scripts.conftest import CITY
from tests.servers import RedisServer


@pytest.fixture
def pins(flushed: RedisServer, redis: Redis, scripts: Scripts) -> TripPins:
    return TripPins(redis, scripts, settings_for(flushed.url))


def wrong(pin: str) -> str:
    return f"{(int(pin) + 1) % 10_000:04d}"


def test_the_code_is_four_digits_per_assignment_and_secret_bound(flushed: RedisServer) -> None:
    a = TripPins(None, None, settings_for(flushed.url))  # type: ignore[arg-type]
    other = TripPins(None, None, settings_for(flushed.url, jwt_secret="z" * 40))  # type: ignore[arg-type]
    codes = {a.pin(f"blr-o{i}", "blr-o-offer") for i in range(200)}
    assert all(len(c) == 4 and c.isdigit() for c in codes)
    assert len(codes) > 150  # spread over the space, not a constant
    assert a.pin("blr-o1", "x1") == a.pin("blr-o1", "x1")
    reassigned = [a.pin(f"blr-o{i}", "x1") != a.pin(f"blr-o{i}", "x2") for i in range(50)]
    assert sum(reassigned) > 40  # another assignment, another code
    assert [a.pin(f"o{i}", "f") for i in range(20)] != [other.pin(f"o{i}", "f") for i in range(20)]


async def test_the_right_code_passes_and_clears_the_misses(pins: TripPins, redis: Redis) -> None:
    code = pins.pin("blr-o1", "f1")
    with pytest.raises(Unprocessable, match="4 tries left"):
        await pins.check(CITY, "blr-o1", "f1", wrong(code))
    assert await redis.get(keys.trip_pin_misses(CITY, "blr-o1")) == "1"
    await pins.check(CITY, "blr-o1", "f1", code)
    assert not await redis.exists(keys.trip_pin_misses(CITY, "blr-o1"))


async def test_a_missing_code_names_the_field_and_costs_no_try(
    pins: TripPins, redis: Redis
) -> None:
    with pytest.raises(Unprocessable) as caught:
        await pins.check(CITY, "blr-o1", "f1", None)
    assert caught.value.extra["errors"][0]["field"] == "pin"
    assert not await redis.exists(keys.trip_pin_misses(CITY, "blr-o1"))


async def test_five_wrong_codes_lock_the_step_even_for_the_right_one(
    pins: TripPins, redis: Redis
) -> None:
    code = pins.pin("blr-o1", "f1")
    for left in range(MISSES - 1, 0, -1):
        with pytest.raises(Unprocessable, match=f"{left} tries left"):
            await pins.check(CITY, "blr-o1", "f1", wrong(code))
    with pytest.raises(PinLocked) as locked:
        await pins.check(CITY, "blr-o1", "f1", wrong(code))
    assert locked.value.extra["retry_after"] == LOCK_MS // 1000
    with pytest.raises(PinLocked):
        await pins.check(CITY, "blr-o1", "f1", code)
    ttl = await redis.pttl(keys.trip_pin_misses(CITY, "blr-o1"))
    assert 0 < ttl <= LOCK_MS
    events = await redis.xrange(keys.order_events(CITY, "blr-o1"))
    assert [e["status"] for _, e in events] == ["PIN_LOCKED"]
    # Other orders are not locked.
    await pins.check(CITY, "blr-o2", "f2", pins.pin("blr-o2", "f2"))


async def test_the_lock_ends_with_its_window(pins: TripPins, redis: Redis) -> None:
    code = pins.pin("blr-o1", "f1")
    for _ in range(MISSES):
        with pytest.raises((Unprocessable, PinLocked)):
            await pins.check(CITY, "blr-o1", "f1", wrong(code))
    await redis.delete(keys.trip_pin_misses(CITY, "blr-o1"))  # the window's end, as Redis has it
    await pins.check(CITY, "blr-o1", "f1", code)
