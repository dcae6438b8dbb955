"""Bad input gets a clear 4xx naming the problem, as problem+json, and nothing is stored."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from rideflow.redis import keys
from tests.conftest import BLR

GOOD = {
    "rider_id": "r1",
    "pickup": {"lat": BLR[0], "lng": BLR[1]},
    "dropoff": {"lat": 13.01, "lng": 77.60},
}


async def nothing_stored(redis: Redis) -> None:
    """Nothing but the request log (every request, refused ones too, leaves an entry)."""
    stored = [k for k in await redis.keys("*") if k != keys.request_log()]
    assert stored == [], stored


def assert_problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return dict(body)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({**GOOD, "pickup": {"lat": 91, "lng": BLR[1]}}, "pickup.lat", "less than or equal to 90"),
        ({**GOOD, "pickup": {"lat": BLR[0], "lng": "abc"}}, "pickup.lng", "valid number"),
        ({k: v for k, v in GOOD.items() if k != "dropoff"}, "dropoff", "Field required"),
        ({**GOOD, "surge": 2}, "surge", "Extra inputs are not permitted"),
        ({**GOOD, "rider_id": ""}, "rider_id", "at least 1 character"),
        ({**GOOD, "pickup": {"lat": 40.0, "lng": -74.0}}, "pickup", "outside every service area"),
    ],
)
async def test_bad_ride_request_is_422_naming_the_field(
    client: httpx.AsyncClient, redis: Redis, body: dict[str, object], field: str, words: str
) -> None:
    problem = assert_problem(await client.post("/v1/rides", json=body), 422)
    errors = problem["errors"]
    assert isinstance(errors, list)
    assert any(e["field"] == field and words in e["reason"] for e in errors), errors
    await nothing_stored(redis)


async def test_malformed_json_is_422(client: httpx.AsyncClient, redis: Redis) -> None:
    r = await client.post(
        "/v1/rides", content=b'{"rider_id": ', headers={"content-type": "application/json"}
    )
    assert_problem(r, 422)
    await nothing_stored(redis)


async def test_one_megabyte_body_is_413(client: httpx.AsyncClient, redis: Redis) -> None:
    body = b'{"rider_id": "' + b"x" * (1024 * 1024) + b'"}'
    problem = assert_problem(
        await client.post("/v1/rides", content=body, headers={"content-type": "application/json"}),
        413,
    )
    assert "exceeds the limit" in str(problem["detail"])
    await nothing_stored(redis)


async def test_streamed_body_over_the_cap_is_413(client: httpx.AsyncClient, redis: Redis) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(16):
            yield b"x" * 65536

    r = await client.post(
        "/v1/drivers/locations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(r, 413)
    await nothing_stored(redis)


async def test_unknown_ride_is_404(client: httpx.AsyncClient, redis: Redis) -> None:
    for path in ("/v1/rides/blr-0000", "/v1/rides/nowhere-1", "/v1/rides/x"):
        problem = assert_problem(await client.get(path), 404)
        assert "no ride" in str(problem["detail"])
    assert_problem(await client.post("/v1/rides/blr-0000/cancel"), 404)
    await nothing_stored(redis)


async def test_unknown_driver_is_404(client: httpx.AsyncClient, redis: Redis) -> None:
    assert_problem(await client.get("/v1/drivers/ghost"), 404)
    assert_problem(await client.put("/v1/drivers/ghost/status", json={"status": "online"}), 404)
    r = await client.put("/v1/drivers/ghost/location", json={"lat": BLR[0], "lng": BLR[1]})
    assert_problem(r, 404)
    await nothing_stored(redis)


async def test_bad_driver_fields_are_422(client: httpx.AsyncClient, redis: Redis) -> None:
    r = await client.post("/v1/drivers", json={"id": "d1", "name": "A", "rating": 7})
    assert any(e["field"] == "rating" for e in assert_problem(r, 422)["errors"])  # type: ignore[attr-defined]
    r = await client.post("/v1/drivers", json={"id": "d 1", "name": "A"})
    assert any(e["field"] == "id" for e in assert_problem(r, 422)["errors"])  # type: ignore[attr-defined]
    r = await client.post("/v1/drivers", json={"id": "d1", "name": "A", "city": "atlantis"})
    assert "unknown city" in str(assert_problem(r, 422)["detail"])
    await nothing_stored(redis)


async def test_cancelling_a_completed_ride_is_409_and_changes_nothing(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    r = await client.post("/v1/rides", json=GOOD)
    ride_id = r.json()["ride_id"]
    r = await client.post(f"/v1/rides/{ride_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    before = await redis.hgetall(f"rf:{{blr}}:order:{ride_id}")
    problem = assert_problem(await client.post(f"/v1/rides/{ride_id}/cancel"), 409)
    assert "is CANCELLED" in str(problem["detail"])
    done = await client.post(f"/v1/rides/{ride_id}/complete", json={"driver_id": "d1"})
    assert "only a ride that is PICKED_UP" in str(assert_problem(done, 409)["detail"])
    arriving = await client.post(f"/v1/rides/{ride_id}/arriving", json={"driver_id": "d1"})
    assert "only a ride that is ACCEPTED" in str(assert_problem(arriving, 409)["detail"])
    nobody = await client.post(f"/v1/rides/{ride_id}/arriving", json={})
    assert assert_problem(nobody, 422)["errors"][0]["field"] == "driver_id"  # type: ignore[index]
    assert await redis.hgetall(f"rf:{{blr}}:order:{ride_id}") == before


async def test_duplicate_driver_is_409(client: httpx.AsyncClient) -> None:
    body = {"id": "d1", "name": "A"}
    assert (await client.post("/v1/drivers", json=body)).status_code == 201
    assert_problem(await client.post("/v1/drivers", json=body), 409)


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing"), 404)
    assert_problem(await client.delete("/v1/rides"), 405)


async def test_bad_ids_in_paths_and_seed_bodies_are_422(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    r = await client.put("/v1/drivers/bad%20id/location", json={"lat": BLR[0], "lng": BLR[1]})
    assert_problem(r, 422)
    r = await client.get("/v1/drivers/" + "x" * 65)
    assert_problem(r, 422)
    seed = {
        "rider_id": 10**80,
        "pickup_lat": BLR[0],
        "pickup_lng": BLR[1],
        "dest_lat": 13.0,
        "dest_lng": 77.6,
    }
    problem = assert_problem(await client.post("/request-ride", json=seed), 422)
    assert "rider_id" in str(problem["detail"])
    await nothing_stored(redis)


async def test_docs_show_every_endpoint_with_its_body(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/rides", "post"),
        ("/v1/rides/{ride_id}", "get"),
        ("/v1/rides/{ride_id}/cancel", "post"),
        ("/v1/drivers", "post"),
        ("/v1/drivers/{driver_id}/status", "put"),
        ("/v1/drivers/{driver_id}/location", "put"),
        ("/v1/drivers/locations", "post"),
        ("/request-ride", "post"),
        ("/v1/rides/{ride_id}/arriving", "post"),
        ("/v1/rides/{ride_id}/picked-up", "post"),
        ("/v1/rides/{ride_id}/complete", "post"),
        ("/v1/rides/{ride_id}/events", "get"),
        ("/v1/deliveries", "post"),
        ("/v1/deliveries/{delivery_id}", "get"),
        ("/v1/deliveries/{delivery_id}/delivered", "post"),
        ("/v1/delivery/assign", "post"),
        ("/v1/drivers/{driver_id}/offers", "get"),
        ("/v1/offers/{offer_id}", "get"),
        ("/v1/offers/{offer_id}/accept", "post"),
        ("/v1/offers/{offer_id}/reject", "post"),
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}/cancel", "post"),
        ("/v1/jobs/{job_id}/redrive", "post"),
        ("/v1/jobs/dead", "get"),
        ("/v1/jobs/stats", "get"),
        ("/submit-job", "post"),
        ("/job-status/{job_id}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ]:
        assert method in paths[path], (path, method)
    create = paths["/v1/rides"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    # The rider comes from the caller's token; ADMIN and back ends name one.
    assert body["required"] == ["pickup", "dropoff"] and body["examples"]
    assert "rider_id" in body["properties"]
    assert {"AccessToken": []} in create["security"] and {"ApiKey": []} in create["security"]
    ref = body["properties"]["pickup"]["$ref"].rsplit("/", 1)[1]
    assert ref in spec["components"]["schemas"]
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    assign = paths["/v1/delivery/assign"]["post"]["requestBody"]["content"]["application/json"]
    assert assign["schema"]["examples"][0]["order_id"] == "ORD_2847"


async def test_empty_and_non_json_ride_bodies_are_422(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    for content in (b"", b"rider=1", b"[]"):
        r = await client.post(
            "/v1/rides", content=content, headers={"content-type": "application/json"}
        )
        assert_problem(r, 422)
    await nothing_stored(redis)
