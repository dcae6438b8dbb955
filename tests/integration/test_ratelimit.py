"""Rate limits in-process: headers, trusted proxies, each algorithm against the real scripts.
(Exact counts under concurrency across two API processes: tests/e2e/test_rate_limits.py.)"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from rideflow.api.ratelimit import RateLimiter
from rideflow.config import RatePolicy, Settings
from rideflow.redis.scripts import Scripts
from tests.conftest import api_client

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


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_headers_on_admitted_and_refused(
    settings: Settings, redis: Redis, algorithm: str
) -> None:
    # Anonymous: limited per address (a user's limit is their own: test_user_limits).
    async with api_client(limited(settings, algorithm, limit=2, window_s=60), headers={}) as c:
        first, second, third = [await c.get("/v1/rides/blr-none") for _ in range(3)]
        assert (await c.get("/healthz")).status_code == 200  # health is never limited
    assert first.status_code == second.status_code == 401
    assert first.headers["RateLimit-Policy"] == '"all";q=2;w=60'
    assert first.headers["RateLimit"].startswith('"all";r=1;t=')
    assert second.headers["RateLimit"].startswith('"all";r=0;t=')
    assert third.status_code == 429
    assert third.headers["content-type"] == "application/problem+json"
    assert 0 < int(third.headers["Retry-After"]) <= 60
    assert "allows 2 requests per 60 s" in third.json()["detail"]


async def test_trusted_proxy_forwards_the_client_address(settings: Settings, redis: Redis) -> None:
    # The in-process transport's peer is 127.0.0.1: trust it as a proxy.
    s = limited(settings, "fixed_window", limit=2, window_s=60, trusted_proxies=["127.0.0.0/8"])
    async with api_client(s, client=("127.0.0.1", 5000), headers={}) as c:
        codes: Counter[tuple[str, int]] = Counter()
        for client in ("203.0.113.7", "198.51.100.9"):
            for _ in range(3):
                r = await c.get("/v1/rides/blr-none", headers={"X-Forwarded-For": client})
                codes[(client, r.status_code)] += 1
    assert codes == Counter(
        {
            ("203.0.113.7", 401): 2,
            ("203.0.113.7", 429): 1,
            ("198.51.100.9", 401): 2,
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
