"""Bodies that change state must be JSON: a web page can send a form, `text/plain` or multipart
cross-site without asking the browser first (no CORS preflight); each is now 415 and creates
nothing. (The media-type rule itself: tests/unit/test_edge_rules.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from rideflow.auth.principal import Role
from rideflow.config import Settings
from rideflow.redis import keys
from tests.auth import bearer
from tests.conftest import BLR

RIDE = {
    "rider_id": "rider-1",
    "pickup": {"lat": BLR[0], "lng": BLR[1]},
    "dropoff": {"lat": BLR[0] + 0.02, "lng": BLR[1] + 0.01},
}
BODY = orjson.dumps(RIDE)
BROWSER = {"Origin": "https://evil.example"}
"""What a cross-site page's request carries (and no credentials of ours)."""


async def rides_stored(redis: Redis) -> int:
    """Rides created: order keys of the city (a ride leaves its hash and its events)."""
    return len([k async for k in redis.scan_iter(match=keys.order("blr", "") + "*")])


def assert_415(r: httpx.Response) -> None:
    assert r.status_code == 415, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 415 and problem["title"] == "Unsupported media type"
    assert "Content-Type: application/json" in problem["detail"]


async def test_a_cross_site_page_cannot_create_rides(
    client: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    # What <form enctype="text/plain">, a urlencoded form, a multipart form and fetch() with
    # a "simple" content type send: all without a preflight.
    attempts = [
        client.post("/v1/rides", content=BODY, headers={**BROWSER, "content-type": "text/plain"}),
        client.post("/v1/rides", data={"rider_id": "rider-1"}, headers=BROWSER),
        client.post("/v1/rides", files={"ride": ("ride.json", BODY)}, headers=BROWSER),
        client.post(
            "/v1/rides",
            content=BODY,
            headers={**BROWSER, "content-type": "text/plain;charset=UTF-8"},
        ),
    ]
    for attempt in attempts:
        assert_415(await attempt)
    assert await rides_stored(redis) == 0
    # The same body as JSON is a ride: the refusals were for the media type alone.
    headers = bearer(settings, "rider-1", Role.CUSTOMER)
    ok = await client.post(
        "/v1/rides", content=BODY, headers={**headers, "content-type": "application/json"}
    )
    assert ok.status_code == 202, ok.text
    assert await rides_stored(redis) > 0


@pytest.mark.parametrize(
    "media",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.rideflow+json",
    ],
)
async def test_json_in_any_spelling_is_accepted(
    client: httpx.AsyncClient, settings: Settings, redis: Redis, media: str
) -> None:
    headers = bearer(settings, "rider-1", Role.CUSTOMER)
    r = await client.post("/v1/rides", content=BODY, headers={**headers, "content-type": media})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/drivers/D1/location"),
        ("PATCH", "/v1/restaurants/r-1/menu/i-1"),
        ("DELETE", "/v1/restaurants/r-1/menu/i-1"),
        ("POST", "/v1/offers/o-1/accept"),
    ],
)
@pytest.mark.parametrize(
    "media",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_every_state_changing_method_needs_json(
    client: httpx.AsyncClient, redis: Redis, method: str, path: str, media: str | None
) -> None:
    headers = {} if media is None else {"content-type": media}
    assert_415(await client.request(method, path, content=b'{"a": 1}', headers=headers))


async def test_a_streamed_body_is_checked_too(client: httpx.AsyncClient, redis: Redis) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield BODY

    r = await client.post("/v1/rides", content=chunks(), headers={"content-type": "text/plain"})
    assert "content-length" not in r.request.headers  # sent chunked
    assert_415(r)
    assert await rides_stored(redis) == 0


async def test_requests_without_a_body_need_no_content_type(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    # A bodiless step (cancel) and reads: the content type does not matter.
    r = await client.post("/v1/rides/blr-none/cancel", headers={"content-type": "text/plain"})
    assert r.status_code != 415
    assert (await client.get("/v1/rides/blr-none")).status_code != 415


async def test_the_token_route_takes_its_form(client: httpx.AsyncClient, redis: Redis) -> None:
    # The OAuth2 password flow posts a form by specification (whatever it answers here).
    r = await client.post("/v1/auth/token", data={"username": "a@b.example", "password": "x"})
    assert r.status_code != 415


async def test_415_is_documented_on_routes_that_take_a_body(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "415" in paths["/v1/rides"]["post"]["responses"]
    assert "415" not in paths["/v1/rides/{ride_id}"]["get"]["responses"]
