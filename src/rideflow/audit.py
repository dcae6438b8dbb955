"""`rideflow audit`: read Redis and report any breach of the dispatch invariant (a driver holds at
most one active ride and a ride at most one driver) or any ride in no known state.

Rides and drivers are read in two scans, not one snapshot: on a system that is dispatching, a
ride finishing between the scans can show as a breach. Run it when work has stopped (as the tests
and benchmarks do), or run it twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import cast

from redis.asyncio import Redis

from rideflow import keys
from rideflow.rides import STATUSES

BATCH = 500


async def _hashes(
    redis: Redis, pattern: str, fields: list[str]
) -> AsyncIterator[tuple[str, list[str | None]]]:
    """(key, values of `fields`) for every key matching `pattern`, read in pipelined batches."""
    batch: list[str] = []

    async def flush() -> list[tuple[str, list[str | None]]]:
        async with redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.hmget(key, fields)
            values = cast(list[list[str | None]], await pipe.execute())
        return list(zip(batch, values, strict=True))

    async for key in redis.scan_iter(match=pattern, count=1000, _type="hash"):
        batch.append(str(key))
        if len(batch) >= BATCH:
            for item in await flush():
                yield item
            batch = []
    if batch:
        for item in await flush():
            yield item


async def audit_city(redis: Redis, city: str) -> list[str]:
    """Every breach found in one city, as sentences."""
    found: list[str] = []
    ride_prefix, driver_prefix = keys.ride(city, ""), keys.driver(city, "")
    rides: dict[str, tuple[str | None, str | None]] = {}
    drivers_of_ride: dict[str, list[str]] = defaultdict(list)
    async for key, (status, driver) in _hashes(redis, ride_prefix + "*", ["status", "driver"]):
        ride_id = key.removeprefix(ride_prefix)
        rides[ride_id] = (status, driver)
        if status not in STATUSES:
            found.append(f"ride {ride_id} is in no known state ({status!r})")
        elif status == "ASSIGNED" and not driver:
            found.append(f"ride {ride_id} is ASSIGNED to no driver")
    pool = keys.pool(city)
    async for key, (held,) in _hashes(redis, driver_prefix + "*", ["ride"]):
        driver_id = key.removeprefix(driver_prefix)
        if not held:
            continue
        drivers_of_ride[held].append(driver_id)
        status, named = rides.get(held, (None, None))
        if status != "ASSIGNED" or named != driver_id:
            found.append(
                f"driver {driver_id} holds ride {held}, which is {status or 'gone'} "
                f"with driver {named or 'none'}"
            )
        if await redis.zscore(pool, driver_id) is not None:
            found.append(f"driver {driver_id} holds ride {held} but is in the available pool")
    for ride_id, holders in drivers_of_ride.items():
        if len(holders) > 1:
            found.append(f"ride {ride_id} is held by {len(holders)} drivers: {sorted(holders)}")
    rides_of_driver: dict[str, list[str]] = defaultdict(list)
    for ride_id, (status, driver) in rides.items():
        if status == "ASSIGNED" and driver:
            rides_of_driver[driver].append(ride_id)
            if driver not in drivers_of_ride.get(ride_id, []):
                found.append(f"ride {ride_id} names driver {driver}, who does not hold it")
    for driver_id, assigned in rides_of_driver.items():
        if len(assigned) > 1:
            found.append(
                f"driver {driver_id} is assigned {len(assigned)} rides: {sorted(assigned)}"
            )
    return found


async def audit(redis: Redis, cities: list[str]) -> list[str]:
    """Every breach found in the given cities."""
    found: list[str] = []
    for city in cities:
        found += [f"{city}: {line}" for line in await audit_city(redis, city)]
    return found
