"""Trip PINs end to end: the customer is given the code (over the socket at ACCEPTED and on
reading their order), the driver must present it for the pickup of a ride and the drop-off of a
delivery, five wrong codes lock the step, and nothing a driver can read holds the code."""

from __future__ import annotations

import re
from typing import Any

import httpx
from redis.asyncio import Redis

from rideflow.auth.principal import Role
from rideflow.config import Settings
from rideflow.redis import keys
from tests import auth
from tests.conftest import BLR, Workers, api_client, offset
from tests.fleet import add_driver, request_ride, wait_for_status
from tests.sockets import admin_client, opened, served

PICKUP = {"lat": BLR[0], "lng": BLR[1]}
DROPOFF = {"lat": BLR[0] + 0.02, "lng": BLR[1] + 0.01}


async def accepted_by(
    http: httpx.AsyncClient, order_id: str, driver: dict[str, str], kind: str = "rides"
) -> None:
    """The order, offered to the driver, accepted by them over REST."""
    offered = await wait_for_status(http, order_id, {"OFFERED"}, kind=kind)
    offer_id = offered["offer_id"]
    offer = (await http.get(f"/v1/offers/{offer_id}", headers=driver)).json()
    r = await http.post(
        f"/v1/offers/{offer_id}/accept", json={"token": offer["token"]}, headers=driver
    )
    assert r.status_code == 200, r.text


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return dict(r.json())


async def test_the_customer_is_given_the_code_and_the_driver_must_present_it(
    settings: Settings, workers: Workers
) -> None:
    workers.dispatcher(settings)
    rider, d1 = auth.customer(settings, "rider-9"), auth.driver(settings, "D1")
    async with served(settings) as url, admin_client(settings, url) as http:
        await add_driver(http, "D1", offset(*BLR, north_m=150))
        async with (
            opened(settings, url, "D1", Role.DRIVER) as driver,
            opened(settings, url, "rider-9", Role.CUSTOMER) as customer,
        ):
            ride = await request_ride(http, BLR, rider="rider-9")
            assert (await customer.request("subscribe", {"order_id": ride}))["type"] == "ack"
            offer = (await driver.next("offer"))["data"]
            reply = await driver.request(
                "offer.accept", {"offer_id": offer["offer_id"], "token": offer["token"]}
            )
            assert reply["type"] == "ack", reply
            pushed = await customer.next("pin")
            pin = pushed["data"]["pin"]
            assert pushed["data"]["order_id"] == ride and re.fullmatch(r"[0-9]{4}", pin)
            # On reading the order: the customer sees it; the driver and ADMIN do not.
            mine = (await http.get(f"/v1/rides/{ride}", headers=rider)).json()
            assert mine["pin"] == pin
            assert (await http.get(f"/v1/rides/{ride}", headers=d1)).json()["pin"] is None
            assert (await http.get(f"/v1/rides/{ride}")).json()["pin"] is None
            # A customer who follows the order after ACCEPTED is given it too.
            async with opened(settings, url, "rider-9", Role.CUSTOMER) as later:
                assert (await later.request("subscribe", {"order_id": ride}))["type"] == "ack"
                assert (await later.next("pin"))["data"] == {"order_id": ride, "pin": pin}

            r = await http.post(f"/v1/rides/{ride}/arriving", headers=d1)
            assert r.status_code == 200, r.text  # only the pickup takes the code
            path = f"/v1/rides/{ride}/picked-up"
            assert problem(await http.post(path, headers=d1), 422)["errors"][0]["field"] == "pin"
            wrong = f"{(int(pin) + 1) % 10_000:04d}"
            body = problem(await http.post(path, json={"pin": wrong}, headers=d1), 422)
            assert "4 tries left" in body["detail"]
            body = problem(await http.post(path, json={"pin": "12a4"}, headers=d1), 422)
            assert body["errors"][0]["field"] == "pin"  # not a code at all: costs no try
            r = await http.post(path, json={"pin": pin}, headers=d1)
            assert r.status_code == 200 and r.json()["status"] == "PICKED_UP", r.text
            assert r.json()["pin"] is None
            assert (await http.get(f"/v1/rides/{ride}", headers=rider)).json()["pin"] is None
            r = await http.post(f"/v1/rides/{ride}/complete", headers=d1)
            assert r.status_code == 200, r.text
            # Nothing the driver's socket was sent holds the code.
            while (await driver.next("event"))["data"]["status"] != "COMPLETED":
                pass
            assert all(m["type"] != "pin" for m in driver.inbox)
            assert pin not in str([m for m in driver.inbox if m["type"] != "ping"])
            events = (await http.get(f"/v1/rides/{ride}/events", headers=d1)).text
            assert '"pin"' not in events


async def test_five_wrong_codes_lock_the_pickup_for_five_minutes(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    workers.dispatcher(settings)
    rider, d1 = auth.customer(settings, "rider-9"), auth.driver(settings, "D1")
    async with api_client(settings) as http:
        await add_driver(http, "D1", offset(*BLR, north_m=150))
        ride = await request_ride(http, BLR, rider="rider-9")
        await accepted_by(http, ride, d1)
        assert (await http.post(f"/v1/rides/{ride}/arriving", headers=d1)).status_code == 200
        pin = (await http.get(f"/v1/rides/{ride}", headers=rider)).json()["pin"]
        wrong = f"{(int(pin) + 1) % 10_000:04d}"
        path = f"/v1/rides/{ride}/picked-up"
        for left in (4, 3, 2, 1):
            body = problem(await http.post(path, json={"pin": wrong}, headers=d1), 422)
            assert f"{left} tries left" in body["detail"]
        locked = await http.post(path, json={"pin": wrong}, headers=d1)
        problem(locked, 429)
        assert int(locked.headers["Retry-After"]) == 300
        # Locked even for the right code; the order stays where it was.
        assert problem(await http.post(path, json={"pin": pin}, headers=d1), 429)
        ride_now = (await http.get(f"/v1/rides/{ride}", headers=rider)).json()
        assert ride_now["status"] == "DRIVER_ARRIVING" and ride_now["pin"] == pin
        events = (await http.get(f"/v1/rides/{ride}/events", headers=rider)).json()["events"]
        assert [e["status"] for e in events][-1] == "PIN_LOCKED"
        # ADMIN (support) may make the step for a driver without the code.
        r = await http.post(path, json={"driver_id": "D1"})
        assert r.status_code == 200 and r.json()["status"] == "PICKED_UP", r.text
        assert await redis.exists(keys.trip_pin_misses("blr", ride))


async def test_a_delivery_takes_the_code_at_the_drop_off(
    settings: Settings, workers: Workers
) -> None:
    workers.dispatcher(settings)
    customer, d1 = auth.customer(settings, "cust-7"), auth.driver(settings, "D1")
    async with api_client(settings) as http:
        await add_driver(http, "D1", offset(*BLR, north_m=150))
        r = await http.post(
            "/v1/deliveries", json={"pickup": PICKUP, "dropoff": DROPOFF}, headers=customer
        )
        assert r.status_code == 202, r.text
        delivery = r.json()["delivery_id"]
        await accepted_by(http, delivery, d1, kind="deliveries")
        base = f"/v1/deliveries/{delivery}"
        for step in ("arriving", "picked-up"):
            r = await http.post(f"{base}/{step}", headers=d1)
            assert r.status_code == 200, r.text
        pin = (await http.get(base, headers=customer)).json()["pin"]
        assert re.fullmatch(r"[0-9]{4}", pin)  # still shown while the parcel travels
        assert (await http.get(base, headers=d1)).json()["pin"] is None
        assert problem(await http.post(f"{base}/delivered", headers=d1), 422)
        r = await http.post(f"{base}/delivered", json={"pin": pin}, headers=d1)
        assert r.status_code == 200 and r.json()["status"] == "DELIVERED", r.text
