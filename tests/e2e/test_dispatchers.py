"""Several dispatcher processes over several cities, as `rideflow up --dispatchers M` runs them.
Cities are not parted out: every dispatcher reads every city's request stream through the city's
consumer group, so each city's orders are spread over all of them, and every dispatcher sweeps
every city's offer deadlines, so an offer lapses while any one of them runs."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from rideflow.config import City, Settings
from tests.conftest import BLR, api_client, offset
from tests.fleet import events_of, offered_to, wait_for_status
from tests.servers import Service, eventually

DEL = (28.6139, 77.2090)
CENTRES = {"blr": BLR, "del": DEL}
DISPATCHERS = 3
ASSIGNED = re.compile(r"→ Driver (\S+) assigned \(order (\S+),")


def two_cities(settings: Settings, **update: Any) -> Settings:
    delhi = City(code="del", name="Delhi", lat=DEL[0], lng=DEL[1], radius_km=30)
    return settings.model_copy(update={"cities": [*settings.cities, delhi], **update})


def start(services: Callable[..., Service], settings: Settings) -> list[Service]:
    return [
        services("dispatcher", settings, name=f"dispatcher-{n}", concurrency=4)
        for n in range(1, DISPATCHERS + 1)
    ]


def served(dispatchers: list[Service]) -> dict[str, list[str]]:
    """Which dispatchers offered each order (from their log lines), by order id."""
    out: dict[str, list[str]] = {}
    for d in dispatchers:
        for _, order in ASSIGNED.findall(d.output()):
            out.setdefault(order, []).append(d.name)
    return out


async def add_driver(c: httpx.AsyncClient, driver: str, city: str, north_m: float) -> None:
    r = await c.post("/v1/drivers", json={"id": driver, "name": driver, "city": city})
    assert r.status_code == 201, r.text
    lat, lng = offset(*CENTRES[city], north_m=north_m)
    r = await c.put(f"/v1/drivers/{driver}/location", json={"lat": lat, "lng": lng})
    assert r.status_code == 204, r.text
    r = await c.put(f"/v1/drivers/{driver}/status", json={"status": "online"})
    assert r.status_code == 200, r.text


async def ride_in(c: httpx.AsyncClient, city: str) -> str:
    lat, lng = CENTRES[city]
    body = {
        "pickup": {"lat": lat, "lng": lng},
        "dropoff": {"lat": lat + 0.02, "lng": lng + 0.01},
        "rider_id": f"rider-{city}",
    }
    r = await c.post("/v1/rides", json=body)
    assert r.status_code == 202, r.text
    ride: str = r.json()["ride_id"]
    assert ride.startswith(f"{city}-")
    return ride


@contextmanager
def paused(dispatchers: list[Service]) -> Iterator[None]:
    """SIGSTOP the dispatchers (they keep their connections and do nothing), SIGCONT after."""
    for d in dispatchers:
        os.kill(d.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for d in dispatchers:
            os.kill(d.pid, signal.SIGCONT)


async def test_every_citys_orders_are_served_and_spread_over_the_dispatchers(
    settings: Settings, services: Callable[..., Service]
) -> None:
    settings = two_cities(settings, ride_deadline_s=60.0)
    dispatchers = start(services, settings)
    per_city = 12
    async with api_client(settings) as c:
        for city in CENTRES:
            for n in range(per_city):
                await add_driver(c, f"{city}-d{n}", city, north_m=100 + 50 * n)
        rides = {city: [await ride_in(c, city) for _ in range(per_city)] for city in CENTRES}
        for city, ids in rides.items():
            for ride in ids:
                offer = await wait_for_status(c, ride, {"OFFERED"}, within=30)
                assert offer["driver"]["id"].startswith(f"{city}-")
    by = served(dispatchers)
    for city, ids in rides.items():
        assert all(len(by[ride]) == 1 for ride in ids), by  # each offered once, by one of them
        spread = Counter(by[ride][0] for ride in ids)
        assert len(spread) >= 2, f"{city}'s orders all went to one dispatcher: {spread}"
    assert all(d.alive() for d in dispatchers)


async def test_each_dispatcher_sweeps_every_citys_deadlines_and_a_killed_ones_offers_lapse(
    settings: Settings, services: Callable[..., Service]
) -> None:
    # Long enough a window that the others are paused well before an offer is due.
    settings = two_cities(settings, ride_offer_window_s=3.0, ride_deadline_s=60.0)
    dispatchers = start(services, settings)
    async with api_client(settings) as c:
        for n, alone in enumerate(dispatchers):
            # One fresh driver per city; the ride of each city is offered to them...
            for city in CENTRES:
                await add_driver(c, f"{city}-r{n}", city, north_m=100)
            rides = {city: await ride_in(c, city) for city in CENTRES}
            offers = [
                (await wait_for_status(c, r, {"OFFERED"}))["offer_id"] for r in rides.values()
            ]
            # ...and only `alone` runs when the offers come due: it must let both lapse.
            with paused([d for d in dispatchers if d is not alone]):
                for offer in offers:
                    assert (await c.get(f"/v1/offers/{offer}")).json()["status"] == "PENDING"

                async def lapsed(offers: list[str] = offers) -> bool:
                    answers = [(await c.get(f"/v1/offers/{o}")).json() for o in offers]
                    return all(a["status"] == "EXPIRED" for a in answers)

                await eventually(lapsed, 20, f"{alone.name} to let every city's offer lapse")
            for city, ride in rides.items():
                assert (await c.post(f"/v1/rides/{ride}/cancel")).status_code == 200
                r = await c.put(f"/v1/drivers/{city}-r{n}/status", json={"status": "offline"})
                assert r.status_code == 200, r.text

        # The dispatcher that made an offer is killed: the others let it lapse at its deadline
        # and offer the ride to the next driver.
        for city in CENTRES:
            await add_driver(c, f"{city}-sleepy", city, north_m=200)
            await add_driver(c, f"{city}-awake", city, north_m=900)
        rides = {city: await ride_in(c, city) for city in CENTRES}
        first = {}
        for city, ride in rides.items():
            offer_id = (await wait_for_status(c, ride, {"OFFERED"}))["offer_id"]
            first[city] = (await c.get(f"/v1/offers/{offer_id}")).json()
        maker = served(dispatchers)[rides["blr"]][0]
        killed = next(d for d in dispatchers if d.name == maker)
        killed.kill9()
        for city, ride in rides.items():

            async def moved_on(ride: str = ride, city: str = city) -> bool:
                return await offered_to(c, ride, f"{city}-awake")

            await eventually(moved_on, 20, f"{city}'s ride to reach the next driver")
            offer = first[city]
            assert offer["driver_id"] == f"{city}-sleepy"
            lapse = next(
                e
                for e in await events_of(c, ride)
                if e["status"] == "SEARCHING" and e["driver_id"] == f"{city}-sleepy"
            )
            assert "lapsed" in lapse["reason"]
            assert lapse["at"] >= offer["expires_at"]  # never before its deadline
    assert [d.alive() for d in dispatchers] == [d is not killed for d in dispatchers]
