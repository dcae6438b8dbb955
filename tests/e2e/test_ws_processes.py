"""Two API processes: a driver's socket on one, the customer's on the other, end to end. Each
process reads the city's event stream itself and gets tracked positions over its own Pub/Sub
connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rideflow.auth.principal import Role
from rideflow.config import Settings
from tests.conftest import BLR, Workers, offset
from tests.fleet import add_driver, events_of, request_ride
from tests.servers import ApiService
from tests.sockets import admin_client, opened

STATUSES = [
    "QUEUED",
    "SEARCHING",
    "OFFERED",
    "ACCEPTED",
    "DRIVER_ARRIVING",
    "PICKED_UP",
    "COMPLETED",
]


async def test_a_driver_on_one_api_process_and_a_customer_on_another(
    settings: Settings, services: Callable[..., Any], workers: Workers
) -> None:
    one: ApiService = services("api", settings)
    two: ApiService = services("api", settings)
    workers.dispatcher(settings)
    async with (
        admin_client(settings, one.url) as http_one,
        admin_client(settings, two.url) as http_two,
    ):
        await add_driver(http_one, "D1", offset(*BLR, north_m=200))
        async with (
            opened(settings, one.url, "D1", Role.DRIVER) as driver,
            opened(settings, two.url, "rider-5", Role.CUSTOMER) as customer,
        ):
            ride = await request_ride(http_two, BLR, rider="rider-5")
            assert (await customer.request("subscribe", {"order_id": ride}))["type"] == "ack"
            offer = (await driver.next("offer"))["data"]
            assert offer["order_id"] == ride
            reply = await driver.request(
                "offer.accept", {"offer_id": offer["offer_id"], "token": offer["token"]}
            )
            assert reply["data"]["order_status"] == "ACCEPTED", reply
            moved = offset(*BLR, north_m=120)
            await driver.request("position", {"lat": moved[0], "lng": moved[1]})
            fix = (await customer.next("position"))["data"]
            assert (fix["driver_id"], fix["lat"], fix["lng"]) == ("D1", *moved)
            for step in ("arriving", "picked-up", "complete"):
                r = await http_two.post(f"/v1/rides/{ride}/{step}", json={"driver_id": "D1"})
                assert r.status_code == 200, r.text
            seen = []
            while not seen or seen[-1]["data"]["status"] != "COMPLETED":
                seen.append(await customer.next("event"))
            driver_seen = []
            while not driver_seen or driver_seen[-1]["data"]["status"] != "COMPLETED":
                driver_seen.append(await driver.next("event"))
        stored = await events_of(http_one, ride)
        assert [e["status"] for e in stored] == STATUSES
        assert [(m["id"], m["data"]["status"]) for m in seen] == [
            (e["id"], e["status"]) for e in stored
        ]
        assert [m["data"]["status"] for m in driver_seen] == STATUSES[3:]
