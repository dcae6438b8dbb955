"""Rate limits: exact counts under concurrency across processes, headers, trusted proxies."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from rideflow.api.ratelimit import RateLimiter
from rideflow.config import RatePolicy, Settings
from rideflow.redis.scripts import Scripts
from tests.servers import raw_get

ALGORITHMS = ["fixed_window", "sliding_window", "token_bucket"]


def limited(
    settings: Settings, algorithm: str, limit: int, window_s: float, **extra: Any
) -> Settings:
    """Settings where every route shares one policy of `limit` hits per `window_s`."""
    policy = RatePolicy(algorithm=algorithm, limit=limit, window_s=window_s)  # type: ignore[arg-type]
    return settings.model_copy(
        update={
            "rate_limit_enabled": True,
            "rate_policies": {"all": policy},
            "rate_routes": [],
            "rate_default_policy": "all",
            **extra,
        }
    )


async def hammer(ports: list[int], hits: int, spoof: bool = False) -> Counter[int]:
    """Send `hits` requests at once, each on its own connection, spread over API processes."""
    gate = asyncio.Semaphore(1000)  # stay clear of the open-file limit

    async def one(i: int) -> int:
        headers = {}
        if spoof:
            headers["X-Forwarded-For"] = str(ipaddress.IPv4Address(random.getrandbits(32)))
        async with gate:
            return await raw_get(ports[i % len(ports)], "/v1/rides/blr-none", headers)

    return Counter(await asyncio.gather(*(one(i) for i in range(hits))))


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_exactly_the_limit_is_admitted_across_two_processes(
    settings: Settings, services: Callable[..., Any], algorithm: str
) -> None:
    # An hour-long window: nothing refills while the test runs, so the count must be exact.
    s = limited(settings, algorithm, limit=100, window_s=3600)
    apis = [services("api", s), services("api", s)]
    statuses = await hammer([a.port for a in apis], 2000)
    assert statuses == Counter({404: 100, 429: 1900}), statuses


@pytest.mark.slow
async def test_spoofed_forwarded_for_from_untrusted_peer_changes_nothing(
    settings: Settings, services: Callable[..., Any]
) -> None:
    s = limited(settings, "sliding_window", limit=100, window_s=3600)
    apis = [services("api", s), services("api", s)]
    statuses = await hammer([a.port for a in apis], 2000, spoof=True)
    assert statuses == Counter({404: 100, 429: 1900}), statuses


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_headers_on_admitted_and_refused(
    settings: Settings, redis: Redis, algorithm: str
) -> None:
    from asgi_lifespan import LifespanManager

    from rideflow.api.app import create_app

    app = create_app(limited(settings, algorithm, limit=2, window_s=60))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rf") as c:
            first, second, third = [await c.get("/v1/rides/blr-none") for _ in range(3)]
            assert (await c.get("/healthz")).status_code == 200  # health is never limited
    assert first.status_code == second.status_code == 404
    assert first.headers["RateLimit-Policy"] == '"all";q=2;w=60'
    assert first.headers["RateLimit"].startswith('"all";r=1;t=')
    assert second.headers["RateLimit"].startswith('"all";r=0;t=')
    assert third.status_code == 429
    assert third.headers["content-type"] == "application/problem+json"
    assert 0 < int(third.headers["Retry-After"]) <= 60
    assert "allows 2 requests per 60 s" in third.json()["detail"]


async def test_trusted_proxy_forwards_the_client_address(settings: Settings, redis: Redis) -> None:
    from asgi_lifespan import LifespanManager

    from rideflow.api.app import create_app

    # The in-process transport's peer is 127.0.0.1: trust it as a proxy.
    s = limited(settings, "fixed_window", limit=2, window_s=60, trusted_proxies=["127.0.0.0/8"])
    app = create_app(s)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://rf") as c:
            codes = Counter()
            for client in ("203.0.113.7", "198.51.100.9"):
                for _ in range(3):
                    r = await c.get("/v1/rides/blr-none", headers={"X-Forwarded-For": client})
                    codes[(client, r.status_code)] += 1
    assert codes == Counter(
        {
            ("203.0.113.7", 404): 2,
            ("203.0.113.7", 429): 1,
            ("198.51.100.9", 404): 2,
            ("198.51.100.9", 429): 1,
        }
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_each_algorithm_refuses_past_the_limit_then_tells_when(
    settings: Settings, redis: Redis, algorithm: str
) -> None:
    s = limited(settings, algorithm, limit=5, window_s=10)
    limiter = RateLimiter(Scripts.register(redis), s)
    decisions = [await limiter.hit("all", "198.51.100.1") for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert all(1 <= d.retry_after_s <= 10 for d in decisions[5:])
    other = await limiter.hit("all", "198.51.100.2")
    assert other.allowed, "clients are counted apart"
