"""CORS: off unless origins are configured; then those origins, and only they, pass a
preflight; credentials only when configured."""

from __future__ import annotations

import httpx

from rideflow.config import Settings
from tests.conftest import api_client

APP = "https://app.example"
EVIL = "https://evil.example"


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


async def test_no_cors_headers_by_default(settings: Settings) -> None:
    async with api_client(settings) as c:
        asked = await c.options("/v1/rides", headers=preflight(APP))
        read = await c.get("/healthz", headers={"Origin": APP})
    assert read.status_code == 200
    assert cors_headers(asked) == {} and cors_headers(read) == {}
    assert asked.status_code == 405  # no route answers OPTIONS: the browser refuses the call


async def test_a_configured_origin_passes_the_preflight_another_does_not(
    settings: Settings,
) -> None:
    configured = settings.model_copy(update={"cors_origins": [APP]})
    async with api_client(configured) as c:
        ours = await c.options("/v1/rides", headers=preflight(APP))
        theirs = await c.options("/v1/rides", headers=preflight(EVIL))
        read = await c.get("/healthz", headers={"Origin": APP})
        read_elsewhere = await c.get("/healthz", headers={"Origin": EVIL})
        refused = await c.post(
            "/v1/rides", content=b"{}", headers={"Origin": APP, "content-type": "text/plain"}
        )
    assert ours.status_code == 200
    assert ours.headers["access-control-allow-origin"] == APP
    assert "POST" in ours.headers["access-control-allow-methods"]
    allowed = ours.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "access-control-allow-credentials" not in ours.headers
    assert theirs.status_code == 400
    assert "access-control-allow-origin" not in theirs.headers
    assert read.headers["access-control-allow-origin"] == APP
    assert "access-control-allow-origin" not in read_elsewhere.headers
    # The edge's own refusals carry the headers too, so the page can read why.
    assert refused.status_code == 415
    assert refused.headers["access-control-allow-origin"] == APP


async def test_credentials_only_when_configured(settings: Settings) -> None:
    configured = settings.model_copy(update={"cors_origins": [APP], "cors_allow_credentials": True})
    async with api_client(configured) as c:
        ours = await c.options("/v1/rides", headers=preflight(APP))
    assert ours.headers["access-control-allow-origin"] == APP
    assert ours.headers["access-control-allow-credentials"] == "true"
