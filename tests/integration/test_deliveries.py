"""Deliveries: the synchronous assignment contract of the delivery-assignment service
(`POST /v1/delivery/assign`) and queued deliveries through the same offer flow as rides."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.dispatch.audit import audit
from rideflow.redis import keys
from tests.conftest import BLR, Workers, api_client, offset
from tests.fleet import add_driver, answer, finish, pending_offer, take, wait_for_status
from tests.integration.test_validation import nothing_stored

# The request body of the contract exactly as written, its comment included.
SEED_BODY = (
    b'{ "order_id": "ORD_2847", "restaurant_id": "RST_441", '
    b'"location": { "lat": 12.9716, "lng": 77.5946 }, "strategy": "nearest", // or "rating"\n'
    b'"radius_km": 5, "timeout_sec": 30 }'
)
JSON = {"content-type": "application/json"}


def assign_body(order_id: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "order_id": order_id,
        "restaurant_id": "RST_441",
        "location": {"lat": BLR[0], "lng": BLR[1]},
        "strategy": "nearest",
        "radius_km": 5,
        "timeout_sec": 30,
    }
    return body | overrides


async def test_the_contract_request_exactly_as_written(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await add_driver(client, "D2", offset(*BLR, north_m=1240))
    await add_driver(client, "D4", offset(*BLR, north_m=-820), rating=4.8)
    r = await client.post("/v1/delivery/assign", content=SEED_BODY, headers=JSON)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"delivery_id", "driver", "partner_info", "latency_ms"}
    assert body["driver"]["id"] == "D4" and body["driver"]["name"] == "Driver D4"
    assert body["driver"]["rating"] == 4.8
    assert body["driver"]["distance_km"] == 0.82
    assert body["driver"]["eta_min"] == 3  # 820 m at the city's 20 km/h, rounded up
    assert body["partner_info"] == {"vehicle": "KA01"}
    assert 0 < body["latency_ms"] < 10_000 and body["status"] == "OFFERED"

    delivery = (await client.get(f"/v1/deliveries/{body['delivery_id']}")).json()
    assert delivery["status"] == "OFFERED" and delivery["order_id"] == "ORD_2847"
    assert delivery["restaurant_id"] == "RST_441" and delivery["dropoff"] is None
    offer = await pending_offer(client, "D4")
    assert offer is not None and offer["kind"] == "delivery"
    window = offer_window_s(offer)
    assert 29 < window <= 30  # the request's timeout_sec

    # The same order again: the same delivery, the same driver.
    again = await client.post("/v1/delivery/assign", content=SEED_BODY, headers=JSON)
    assert again.status_code == 200
    assert again.json()["delivery_id"] == body["delivery_id"]
    assert again.json()["driver"]["id"] == "D4"
    # The same order id with another request: a conflict.
    other = await client.post("/v1/delivery/assign", json=assign_body("ORD_2847", radius_km=3))
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    # Once the driver accepts, the order is assigned: 409.
    assert (await answer(client, offer)).status_code == 200
    taken = await client.post("/v1/delivery/assign", content=SEED_BODY, headers=JSON)
    assert taken.status_code == 409 and "already assigned" in taken.json()["detail"]
    assert taken.headers["content-type"] == "application/problem+json"
    assert (await finish(client, body["delivery_id"], "deliveries"))["status"] == "DELIVERED"
    assert await audit(redis, ["blr"]) == []


def offer_window_s(offer: dict[str, Any]) -> float:
    from datetime import datetime

    created = datetime.fromisoformat(offer["created_at"])
    return (datetime.fromisoformat(offer["expires_at"]) - created).total_seconds()


async def test_no_driver_within_the_radius_is_a_problem_and_a_later_retry_works(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await add_driver(client, "far", offset(*BLR, north_m=4000))
    r = await client.post("/v1/delivery/assign", json=assign_body("ORD_1", radius_km=3))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert "no available driver within 3 km" in problem["detail"]
    first = problem["delivery_id"]
    assert (await client.get(f"/v1/deliveries/{first}")).json()["status"] == "NO_DRIVER_FOUND"
    assert await pending_offer(client, "far") is None

    await add_driver(client, "near", offset(*BLR, east_m=500))
    r = await client.post("/v1/delivery/assign", json=assign_body("ORD_1", radius_km=3))
    assert r.status_code == 200, r.text
    assert r.json()["delivery_id"] != first and r.json()["driver"]["id"] == "near"

    # The rating strategy: the best rated within the radius; `far` is outside it.
    await add_driver(client, "star", offset(*BLR, north_m=2500), rating=5.0)
    r = await client.post(
        "/v1/delivery/assign", json=assign_body("ORD_2", strategy="rating", radius_km=3)
    )
    assert r.status_code == 200 and r.json()["driver"]["id"] == "star"


async def test_assign_input_is_validated(client: httpx.AsyncClient, redis: Redis) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (assign_body("O1", radius_km=0), "radius_km"),
        (assign_body("O1", timeout_sec=1), "timeout_sec"),
        (assign_body("O1", strategy="cheapest"), "strategy"),
        (assign_body("O1", location={"lat": 91, "lng": 0}), "location.lat"),
        (assign_body("O 1"), "order_id"),
        ({k: v for k, v in assign_body("O1").items() if k != "restaurant_id"}, "restaurant_id"),
    ]
    for body, field in cases:
        r = await client.post("/v1/delivery/assign", json=body)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["errors"][0]["field"] == field
    outside = await client.post(
        "/v1/delivery/assign", json=assign_body("O1", location={"lat": 0, "lng": 0})
    )
    assert outside.status_code == 422 and outside.json()["errors"][0]["field"] == "location"
    broken = await client.post("/v1/delivery/assign", content=b'{"order_id": // no', headers=JSON)
    assert broken.status_code == 422
    await nothing_stored(redis)  # the request log may have flushed meanwhile


async def test_a_rejected_assignment_is_dispatched_again_within_its_radius(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "first", offset(*BLR, north_m=300))
        await add_driver(c, "second", offset(*BLR, north_m=1800))
        await add_driver(c, "outside", offset(*BLR, north_m=-2600))
        r = await c.post("/v1/delivery/assign", json=assign_body("ORD_9", radius_km=2))
        assert r.status_code == 200 and r.json()["driver"]["id"] == "first"
        delivery_id = r.json()["delivery_id"]
        offer = await pending_offer(c, "first")
        assert offer is not None
        assert (await answer(c, offer, "reject")).status_code == 200
        # Re-dispatch while the dispatcher works on it: the order is in flight.
        again = await wait_for_status(c, delivery_id, {"OFFERED"}, kind="deliveries")
        assert again["driver"]["id"] == "second"
        second = await pending_offer(c, "second")
        assert second is not None
        assert (await answer(c, second, "reject")).status_code == 200
        # Only `outside` is left, beyond the order's 2 km: it is never offered the order, which
        # searches until its deadline.
        ended = await wait_for_status(c, delivery_id, {"NO_DRIVER_FOUND"}, kind="deliveries")
        assert ended["attempts"] >= 2
        events = (await c.get(f"/v1/deliveries/{delivery_id}/events")).json()["events"]
        assert {e["driver_id"] for e in events if e["status"] == "OFFERED"} == {"first", "second"}
        # The same order again is a fresh attempt: the drivers are free, not excluded from it.
        retry = await c.post("/v1/delivery/assign", json=assign_body("ORD_9", radius_km=2))
        assert retry.status_code == 200, retry.text
        assert retry.json()["delivery_id"] != delivery_id
        assert retry.json()["driver"]["id"] == "first"


async def test_queued_deliveries_follow_the_offer_flow_to_delivered(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "bike", offset(*BLR, north_m=400))
        body = {
            "customer_id": "cust-1",
            "order_id": "ORD_5",
            "pickup": {"lat": BLR[0], "lng": BLR[1]},
            "dropoff": {"lat": 12.99, "lng": 77.61},
            "timeout_sec": 45,
        }
        r = await c.post("/v1/deliveries", json=body, headers={"Idempotency-Key": "d-1"})
        assert r.status_code == 202 and r.json()["status"] == "QUEUED"
        delivery_id = r.json()["delivery_id"]
        same = await c.post("/v1/deliveries", json=body, headers={"Idempotency-Key": "d-1"})
        assert same.json()["delivery_id"] == delivery_id
        taken = await take(c, delivery_id, "deliveries")
        assert taken["status"] == "ACCEPTED" and taken["driver"]["id"] == "bike"
        # Ride steps do not apply to a delivery, nor delivery ids to rides.
        wrong = await c.post(f"/v1/deliveries/{delivery_id}/complete", json={"driver_id": "bike"})
        assert wrong.status_code in (404, 405)
        assert (await c.get(f"/v1/rides/{delivery_id}")).status_code == 404
        done = await finish(c, delivery_id, "deliveries")
        assert done["status"] == "DELIVERED"
        assert "COMPLETED" not in done["transitions"]
        events = (await c.get(f"/v1/deliveries/{delivery_id}/events")).json()["events"]
        assert [e["status"] for e in events][-1] == "DELIVERED"
        offer = (await c.get(f"/v1/offers/{events[2]['offer_id']}")).json()
        assert 44 < offer_window_s(offer) <= 45
    assert await audit(redis, ["blr"]) == []
    assert await redis.zscore(keys.pool("blr"), "bike") is not None


async def test_idempotency_keys_of_customers_and_merchant_orders_do_not_collide(
    client: httpx.AsyncClient,
) -> None:
    await add_driver(client, "d1", offset(*BLR, north_m=300))
    await add_driver(client, "d2", offset(*BLR, north_m=600))
    ride = await client.post(
        "/v1/rides",
        json={
            "rider_id": "assign",
            "pickup": {"lat": BLR[0], "lng": BLR[1]},
            "dropoff": {"lat": 13.0, "lng": 77.6},
        },
        headers={"Idempotency-Key": "M-42"},
    )
    assert ride.status_code == 202
    r = await client.post("/v1/delivery/assign", json=assign_body("M-42"))
    assert r.status_code == 200, r.text
    assert r.json()["delivery_id"] != ride.json()["ride_id"]
