"""Helpers that put drivers, orders and jobs in place through the HTTP API, and wait for them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from tests.servers import eventually

FINAL = {"COMPLETED", "DELIVERED", "CANCELLED", "NO_DRIVER_FOUND"}


async def add_driver(
    client: httpx.AsyncClient,
    driver_id: str,
    at: tuple[float, float],
    *,
    online: bool = True,
    recorded_at: datetime | None = None,
    rating: float = 4.5,
) -> None:
    """Register a driver, report a position, and take them online."""
    r = await client.post(
        "/v1/drivers",
        json={"id": driver_id, "name": f"Driver {driver_id}", "rating": rating, "vehicle": "KA01"},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = {"lat": at[0], "lng": at[1]}
    if recorded_at is not None:
        body["recorded_at"] = recorded_at.isoformat()
    r = await client.put(f"/v1/drivers/{driver_id}/location", json=body)
    assert r.status_code == 204, r.text
    if online:
        r = await client.put(f"/v1/drivers/{driver_id}/status", json={"status": "online"})
        assert r.status_code == 200, r.text


async def request_ride(
    client: httpx.AsyncClient, pickup: tuple[float, float], rider: str = "rider-1"
) -> str:
    """Request a ride; return its id."""
    r = await client.post(
        "/v1/rides",
        json={
            "rider_id": rider,
            "pickup": {"lat": pickup[0], "lng": pickup[1]},
            "dropoff": {"lat": pickup[0] + 0.02, "lng": pickup[1] + 0.01},
        },
    )
    assert r.status_code == 202, r.text
    return str(r.json()["ride_id"])


async def wait_for_status(
    client: httpx.AsyncClient,
    ride_id: str,
    statuses: set[str],
    within: float = 15.0,
    kind: str = "rides",
) -> dict[str, Any]:
    """Poll a ride (or a delivery) until it reaches one of `statuses`; fail after `within` s."""
    import asyncio
    import time

    deadline = time.monotonic() + within
    while True:
        r = await client.get(f"/v1/{kind}/{ride_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"ride {ride_id} stuck in {body['status']}"
        await asyncio.sleep(0.02)


async def pending_offer(client: httpx.AsyncClient, driver_id: str) -> dict[str, Any] | None:
    """The driver's pending offer, or None."""
    r = await client.get(f"/v1/drivers/{driver_id}/offers")
    assert r.status_code == 200, r.text
    offers: list[dict[str, Any]] = r.json()["offers"]
    assert len(offers) <= 1
    return offers[0] if offers else None


async def answer(
    client: httpx.AsyncClient, offer: dict[str, Any], verb: str = "accept", **overrides: Any
) -> httpx.Response:
    """Accept or reject an offer as its driver with its token (unless overridden)."""
    body = {"driver_id": offer["driver_id"], "token": offer["token"], **overrides}
    return await client.post(f"/v1/offers/{offer['offer_id']}/{verb}", json=body)


async def take(client: httpx.AsyncClient, ride_id: str, kind: str = "rides") -> dict[str, Any]:
    """Wait for the order to be offered, accept it as the driver; the order after."""
    order = await wait_for_status(client, ride_id, {"OFFERED"}, kind=kind)
    offer = (await client.get(f"/v1/offers/{order['offer_id']}")).json()
    r = await answer(client, offer)
    assert r.status_code == 200 and r.json()["order_status"] == "ACCEPTED", r.text
    r = await client.get(f"/v1/{kind}/{ride_id}")
    body: dict[str, Any] = r.json()
    return body


async def finish(client: httpx.AsyncClient, ride_id: str, kind: str = "rides") -> dict[str, Any]:
    """Drive an accepted order to its end: arriving, picked up, complete (or delivered)."""
    order = (await client.get(f"/v1/{kind}/{ride_id}")).json()
    driver = {"driver_id": order["driver"]["id"]}
    last = "complete" if kind == "rides" else "delivered"
    for step in ("arriving", "picked-up", last):
        r = await client.post(f"/v1/{kind}/{ride_id}/{step}", json=driver)
        assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def events_of(
    client: httpx.AsyncClient, order_id: str, kind: str = "rides"
) -> list[dict[str, Any]]:
    """An order's whole event stream."""
    r = await client.get(f"/v1/{kind}/{order_id}/events")
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


async def offered_to(client: httpx.AsyncClient, ride_id: str, driver: str) -> bool:
    """Whether the ride is offered to `driver` right now."""
    ride = (await client.get(f"/v1/rides/{ride_id}")).json()
    return bool(ride["status"] == "OFFERED" and ride["driver"]["id"] == driver)


JOB_FINAL = {"completed", "failed", "cancelled"}


async def submit(c: httpx.AsyncClient, task: str = "test_work", **body: Any) -> str:
    """Submit a job; its id."""
    r = await c.post("/v1/jobs", json={"task": task, **body})
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def wait_final(c: httpx.AsyncClient, job_id: str, within: float = 20) -> dict[str, Any]:
    """Poll a job until it is finished; fail after `within` s."""

    async def final() -> dict[str, Any] | None:
        job: dict[str, Any] = (await c.get(f"/v1/jobs/{job_id}")).json()
        return job if job["status"] in JOB_FINAL else None

    result: dict[str, Any] = await eventually(final, within, f"job {job_id} to finish")
    return result
