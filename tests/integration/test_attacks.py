"""The attacks of issue 10's "Why", each tried again now that every route knows its caller: each
must fail to do harm, and the owner must still be able to do the same thing (so a test cannot
pass merely because the route broke). Back ends call with real API keys, made through the API by
ADMIN."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis

from rideflow.api.app import create_app
from rideflow.api.problems import redis_failure
from rideflow.config import Settings
from rideflow.redis import keys
from tests import auth
from tests.conftest import BLR, Workers, offset
from tests.fleet import add_driver, wait_for_status

PICKUP = {"lat": BLR[0], "lng": BLR[1]}
DROPOFF = {"lat": BLR[0] + 0.02, "lng": BLR[1] + 0.01}


@contextlib.asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client of the app."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rideflow") as c:
            yield c


@pytest.fixture
async def c(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as client:
        yield client


class As:
    """Headers of each caller the attacks use."""

    def __init__(self, settings: Settings) -> None:
        self.admin = auth.admin(settings)
        self.alice = auth.customer(settings, "alice")
        self.mallory = auth.customer(settings, "mallory")
        self.dx = auth.driver(settings, "dX")
        self.dy = auth.driver(settings, "dY")
        self.merchant: dict[str, str] = {}
        self.fleet: dict[str, str] = {}
        self.system: dict[str, str] = {}


@pytest.fixture
async def who(settings: Settings, c: httpx.AsyncClient) -> As:
    """The callers; the back ends' API keys made by ADMIN, as an operator makes them."""
    callers = As(settings)
    for name, role in (("merchant", "CUSTOMER"), ("fleet", "DRIVER"), ("system", "ADMIN")):
        r = await c.post(
            "/v1/admin/api-keys", json={"name": name, "role": role}, headers=callers.admin
        )
        assert r.status_code == 201, r.text
        setattr(callers, name, {"X-API-Key": r.json()["key"]})
    return callers


async def offered_ride(
    c: httpx.AsyncClient, who: As, settings: Settings, workers: Workers
) -> dict[str, Any]:
    """Alice's ride, offered to dX (dY registered and online further away)."""
    c.headers.update(who.admin)
    await add_driver(c, "dX", BLR)
    await add_driver(c, "dY", offset(*BLR, north_m=2000))
    del c.headers["Authorization"]
    workers.dispatcher(settings)
    r = await c.post("/v1/rides", json={"pickup": PICKUP, "dropoff": DROPOFF}, headers=who.alice)
    assert r.status_code == 202, r.text
    ride_id = r.json()["ride_id"]
    c.headers.update(who.admin)
    ride = await wait_for_status(c, ride_id, {"OFFERED"})
    del c.headers["Authorization"]
    assert ride["driver"]["id"] == "dX"
    return ride


def no_token_in(r: httpx.Response) -> None:
    assert '"token"' not in r.text, r.text


async def test_nobody_but_the_driver_reads_their_offer_and_its_fencing_token(
    c: httpx.AsyncClient, who: As, settings: Settings, workers: Workers
) -> None:
    ride = await offered_ride(c, who, settings, workers)
    offer_id = ride["offer_id"]
    for headers in ({}, who.alice, who.mallory, who.dy):
        r = await c.get("/v1/drivers/dX/offers", headers=headers)
        assert r.status_code in (401, 403), r.text
        no_token_in(r)
    for headers, status in (({}, 401), (who.mallory, 403), (who.alice, 403), (who.dy, 404)):
        r = await c.get(f"/v1/offers/{offer_id}", headers=headers)
        assert r.status_code == status, r.text
        no_token_in(r)
    r = await c.get("/v1/drivers/dX/offers", headers=who.dx)
    assert r.status_code == 200 and r.json()["offers"][0]["offer_id"] == offer_id


async def test_nobody_but_the_driver_accepts_their_offer_and_drives_the_ride(
    c: httpx.AsyncClient, who: As, settings: Settings, workers: Workers
) -> None:
    ride = await offered_ride(c, who, settings, workers)
    ride_id, offer_id = ride["ride_id"], ride["offer_id"]
    token = (await c.get(f"/v1/offers/{offer_id}", headers=who.dx)).json()["token"]
    accept = f"/v1/offers/{offer_id}/accept"
    # Even holding the token (as the old API handed anyone), nobody else can answer for dX.
    assert (await c.post(accept, json={"driver_id": "dX", "token": token})).status_code == 401
    r = await c.post(accept, json={"driver_id": "dX", "token": token}, headers=who.dy)
    assert r.status_code == 403, r.text
    r = await c.post(accept, json={"token": token}, headers=who.dy)
    assert r.status_code == 404, r.text
    r = await c.post(accept, json={"driver_id": "dX", "token": token}, headers=who.mallory)
    assert r.status_code == 403, r.text
    assert (await c.get(f"/v1/rides/{ride_id}", headers=who.alice)).json()["status"] == "OFFERED"
    r = await c.post(accept, json={"token": token}, headers=who.dx)
    assert r.status_code == 200 and r.json()["order_status"] == "ACCEPTED", r.text
    # Driving it: the steps trust the caller, not a `driver_id` in the body.
    for step in ("arriving", "picked-up", "complete"):
        path = f"/v1/rides/{ride_id}/{step}"
        assert (await c.post(path, json={"driver_id": "dX"})).status_code == 401
        assert (await c.post(path, json={"driver_id": "dX"}, headers=who.dy)).status_code == 403
        assert (await c.post(path, headers=who.dy)).status_code == 404
        assert (await c.post(path, headers=who.mallory)).status_code == 403
        assert (await c.post(path, headers=who.alice)).status_code == 403
    mine = (await c.get(f"/v1/rides/{ride_id}", headers=who.alice)).json()
    assert mine["status"] == "ACCEPTED" and len(mine["pin"]) == 4
    assert (await c.get(f"/v1/rides/{ride_id}", headers=who.dx)).json()["pin"] is None
    for step, body in (("arriving", None), ("picked-up", {"pin": mine["pin"]}), ("complete", None)):
        r = await c.post(f"/v1/rides/{ride_id}/{step}", json=body, headers=who.dx)
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "COMPLETED"


async def test_nobody_cancels_or_reads_another_customers_ride(
    c: httpx.AsyncClient, who: As, settings: Settings, workers: Workers
) -> None:
    ride = await offered_ride(c, who, settings, workers)
    ride_id = ride["ride_id"]
    # The ride id used to leak through the driver's profile.
    for headers in (who.mallory, who.dy):
        r = await c.get("/v1/drivers/dX", headers=headers)
        assert r.status_code == 403 and ride_id not in r.text, r.text
    unknown = await c.post("/v1/rides/blr-nosuchride/cancel", headers=who.mallory)
    r = await c.post(f"/v1/rides/{ride_id}/cancel", headers=who.mallory)
    # Exactly as for an id that does not exist: the id reveals nothing.
    assert r.status_code == unknown.status_code == 404
    assert r.json()["detail"] == unknown.json()["detail"].replace("blr-nosuchride", ride_id)
    assert (await c.get(f"/v1/rides/{ride_id}", headers=who.mallory)).status_code == 404
    assert (await c.get(f"/v1/rides/{ride_id}/events", headers=who.mallory)).status_code == 404
    assert (await c.post(f"/v1/rides/{ride_id}/cancel")).status_code == 401
    assert (await c.post(f"/v1/rides/{ride_id}/cancel", headers=who.dx)).status_code == 403
    assert (await c.get(f"/v1/rides/{ride_id}", headers=who.alice)).json()["status"] == "OFFERED"
    r = await c.post(f"/v1/rides/{ride_id}/cancel", headers=who.alice)
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text


async def test_nobody_takes_another_driver_offline_or_moves_them(
    c: httpx.AsyncClient, who: As, settings: Settings, workers: Workers
) -> None:
    ride = await offered_ride(c, who, settings, workers)
    before = (await c.get("/v1/drivers/dX", headers=who.dx)).json()
    offline = {"status": "offline"}
    elsewhere = {"lat": BLR[0] + 0.1, "lng": BLR[1] + 0.1}
    batch = {"positions": [{"driver_id": "dX", **elsewhere}]}
    for headers in ({}, who.dy, who.mallory):
        r = await c.put("/v1/drivers/dX/status", json=offline, headers=headers)
        assert r.status_code in (401, 403), r.text
        r = await c.put("/v1/drivers/dX/location", json=elsewhere, headers=headers)
        assert r.status_code in (401, 403), r.text
        r = await c.post("/v1/drivers/locations", json=batch, headers=headers)
        assert r.status_code in (401, 403), r.text
    # A driver's own account may not send a fleet's batch either, even of their own position.
    r = await c.post("/v1/drivers/locations", json=batch, headers=who.dx)
    assert r.status_code == 403, r.text
    after = (await c.get("/v1/drivers/dX", headers=who.dx)).json()
    assert after == before and after["status"] == "online"
    assert after["offer_id"] == ride["offer_id"]
    # A fleet gateway's key may; and dX, as themself.
    r = await c.post("/v1/drivers/locations", json=batch, headers=who.fleet)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    r = await c.put("/v1/drivers/dX/status", json=offline, headers=who.dx)
    assert r.status_code == 200 and r.json()["status"] == "offline", r.text


async def test_nobody_but_admin_registers_a_driver(c: httpx.AsyncClient, who: As) -> None:
    body = {"id": "ghost", "name": "Ghost"}
    assert (await c.post("/v1/drivers", json=body)).status_code == 401
    for headers in (who.alice, who.dx, who.merchant, who.fleet):
        assert (await c.post("/v1/drivers", json=body, headers=headers)).status_code == 403
    assert (await c.get("/v1/drivers/ghost", headers=who.admin)).status_code == 404
    assert (await c.post("/v1/drivers", json=body, headers=who.admin)).status_code == 201


async def test_job_payloads_and_results_are_their_submitters_alone(
    c: httpx.AsyncClient, who: As, workers: Workers, settings: Settings
) -> None:
    payload = {"seconds": 0}
    r = await c.post("/v1/jobs", json={"task": "test_work", "payload": payload}, headers=who.alice)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    legacy = await c.post("/submit-job", json={"task": "test_work"}, headers=who.alice)
    legacy_id = legacy.json()["job_id"]
    await workers.jobs(settings, burst=True).task
    for headers, status in (({}, 401), (who.mallory, 404), (who.dx, 404), (who.merchant, 404)):
        for path in (f"/v1/jobs/{job_id}", f"/job-status/{legacy_id}"):
            r = await c.get(path, headers=headers)
            assert r.status_code == status, (path, r.text)
            assert "slept" not in r.text
        r = await c.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
        assert r.status_code == status, r.text
    for path in ("/v1/jobs?status=completed", "/v1/jobs/dead", "/v1/jobs/stats"):
        assert (await c.get(path)).status_code == 401
        for headers in (who.alice, who.mallory, who.dx, who.merchant):
            assert (await c.get(path, headers=headers)).status_code == 403, path
    mine = (await c.get(f"/v1/jobs/{job_id}", headers=who.alice)).json()
    assert mine["result"] == {"slept": 0} and mine["submitted_by"] == "alice"
    assert (await c.get(f"/job-status/{legacy_id}", headers=who.alice)).status_code == 200
    listed = (await c.get("/v1/jobs?status=completed", headers=who.admin)).json()["jobs"]
    assert {j["job_id"] for j in listed} == {job_id, legacy_id}


async def test_idempotency_keys_of_two_submitters_never_meet(c: httpx.AsyncClient, who: As) -> None:
    body = {"task": "test_work", "delay": 600}
    key = {"Idempotency-Key": "same-key"}
    first = await c.post("/v1/jobs", json=body, headers=who.alice | key)
    other = await c.post("/v1/jobs", json=body, headers=who.mallory | key)
    again = await c.post("/v1/jobs", json=body, headers=who.alice | key)
    assert first.status_code == other.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"] != other.json()["job_id"]


async def test_only_the_system_or_admin_rates_a_driver(
    c: httpx.AsyncClient, who: As, workers: Workers, settings: Settings
) -> None:
    c.headers.update(who.admin)
    await add_driver(c, "dX", BLR, rating=4.5)
    del c.headers["Authorization"]
    down = {"task": "update_driver_rating", "payload": {"driver_id": "dX", "rating": 1}}
    assert (await c.post("/v1/jobs", json=down)).status_code == 401
    for headers in (who.alice, who.dx, who.dy):
        r = await c.post("/v1/jobs", json=down, headers=headers)
        assert r.status_code == 403, r.text
        r = await c.post("/submit-job", json={"task": "update_driver_rating"}, headers=headers)
        assert r.status_code == 403, r.text
    await workers.jobs(settings, burst=True).task
    assert (await c.get("/v1/drivers/dX", headers=who.dx)).json()["rating"] == 4.5
    # ADMIN, or a back end, may.
    r = await c.post("/v1/jobs", json=down, headers=who.system)
    assert r.status_code == 202, r.text
    await workers.jobs(settings, burst=True).task
    assert (await c.get("/v1/drivers/dX", headers=who.dx)).json()["rating"] < 4.5


async def test_identity_comes_from_the_caller_never_the_body(c: httpx.AsyncClient, who: As) -> None:
    ride = {"pickup": PICKUP, "dropoff": DROPOFF}
    r = await c.post("/v1/rides", json={**ride, "rider_id": "bob"}, headers=who.alice)
    assert r.status_code == 403 and "rider_id" in r.json()["detail"], r.text
    r = await c.post("/v1/rides", json={**ride, "rider_id": "alice"}, headers=who.alice)
    assert r.status_code == 202, r.text
    r = await c.post("/v1/rides", json=ride, headers=who.alice)
    ride_id = r.json()["ride_id"]
    assert (await c.get(f"/v1/rides/{ride_id}", headers=who.alice)).json()["rider_id"] == "alice"
    for headers in (who.admin, who.merchant):
        r = await c.post("/v1/rides", json=ride, headers=headers)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "rider_id", r.text
        r = await c.post("/v1/rides", json={**ride, "rider_id": "bob"}, headers=headers)
        assert r.status_code == 202, r.text
    legacy = {"pickup_lat": BLR[0], "pickup_lng": BLR[1], "dest_lat": 13.0, "dest_lng": 77.6}
    r = await c.post("/request-ride", json={**legacy, "rider_id": 7}, headers=who.alice)
    assert r.status_code == 403, r.text
    r = await c.post("/request-ride", json=legacy, headers=who.alice)
    assert r.status_code == 202, r.text
    delivery = {"pickup": PICKUP, "dropoff": DROPOFF, "customer_id": "bob"}
    assert (await c.post("/v1/deliveries", json=delivery, headers=who.alice)).status_code == 403
    # History: a customer's list is their own; naming another customer is refused.
    r = await c.get("/v1/rides?customer_id=bob", headers=who.alice)
    assert r.status_code == 403, r.text
    assert (await c.get("/v1/rides", headers=who.alice)).status_code == 200


async def test_the_assignment_contract_is_for_merchants_back_ends(
    c: httpx.AsyncClient, who: As
) -> None:
    c.headers.update(who.admin)
    await add_driver(c, "dX", BLR)
    del c.headers["Authorization"]
    body = {
        "order_id": "ORD_2847",
        "restaurant_id": "RST_441",
        "location": {"lat": 12.9716, "lng": 77.5946},
        "strategy": "nearest",
        "radius_km": 5,
        "timeout_sec": 30,
    }
    assert (await c.post("/v1/delivery/assign", json=body)).status_code == 401
    for headers in (who.alice, who.dx, who.fleet):
        r = await c.post("/v1/delivery/assign", json=body, headers=headers)
        assert r.status_code == 403, r.text
    r = await c.post("/v1/delivery/assign", json=body, headers=who.merchant)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {
        "delivery_id",
        "status",
        "driver",
        "partner_info",
        "offer_expires_at",
        "latency_ms",
    }


async def test_error_details_never_show_redis_keys_or_commands(
    c: httpx.AsyncClient, who: As, redis: Redis
) -> None:
    # A key of the wrong type makes Redis refuse the command: a 500 that names neither.
    await redis.set(keys.DRIVER_DIRECTORY, "not a hash")
    r = await c.get("/v1/drivers/dX", headers=who.admin)
    assert r.status_code == 500, r.text
    for word in ("rf:", keys.DRIVER_DIRECTORY, "WRONGTYPE", "HGET"):
        assert word not in r.text, r.text
    # An outage's error text can quote the command and its keys; the answer does not.
    from redis.exceptions import ConnectionError as RedisConnectionError

    leaky = RedisConnectionError("Error while sending EVALSHA to rf:{blr}:pool")
    answer = redis_failure(leaky, "POST /v1/rides")
    assert answer.status_code == 503
    assert b"rf:" not in answer.body and b"EVALSHA" not in answer.body
    assert b"Redis is unreachable" in answer.body
