"""Helpers that put drivers and rides in place through the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

TERMINAL = {"ASSIGNED", "COMPLETED", "CANCELLED", "NO_DRIVER_FOUND"}


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


async def add_drivers(
    client: httpx.AsyncClient,
    ids: list[str],
    positions: list[tuple[float, float]],
    parallel: int = 50,
) -> None:
    """Register many drivers at once: created and taken online concurrently, positions in one
    batch call."""
    import asyncio

    gate = asyncio.Semaphore(parallel)

    async def call(method: str, path: str, body: dict[str, Any], status: int) -> None:
        async with gate:
            r = await client.request(method, path, json=body)
            assert r.status_code == status, r.text

    await asyncio.gather(
        *(call("POST", "/v1/drivers", {"id": i, "name": f"Driver {i}"}, 201) for i in ids)
    )
    r = await client.post(
        "/v1/drivers/locations",
        json={
            "positions": [
                {"driver_id": i, "lat": p[0], "lng": p[1]}
                for i, p in zip(ids, positions, strict=True)
            ]
        },
    )
    assert r.status_code == 200 and r.json()["accepted"] == len(ids), r.text
    await asyncio.gather(
        *(call("PUT", f"/v1/drivers/{i}/status", {"status": "online"}, 200) for i in ids)
    )


async def wait_for_status(
    client: httpx.AsyncClient, ride_id: str, statuses: set[str], within: float = 15.0
) -> dict[str, Any]:
    """Poll a ride until it reaches one of `statuses`; fail after `within` seconds."""
    import asyncio
    import time

    deadline = time.monotonic() + within
    while True:
        r = await client.get(f"/v1/rides/{ride_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"ride {ride_id} stuck in {body['status']}"
        await asyncio.sleep(0.02)
