"""A bearer token is verified once per request: the rate-limit middleware verifies it before
routing and leaves the caller in the scope, where the route's caller dependency finds it.
Checked on a small app made of RideFlow's own parts (middleware, limiter on the real scripts,
`AnyCaller`), with a verifier that counts its calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis

from rideflow.api import problems
from rideflow.api.middleware import RateLimitMiddleware
from rideflow.api.ratelimit import RateLimiter
from rideflow.api.security import AnyCaller
from rideflow.auth.principal import Principal, Role
from rideflow.auth.secret import jwt_secret
from rideflow.auth.tokens import AccessTokens
from rideflow.config import Settings
from rideflow.redis.scripts import Scripts
from tests.auth import bearer


class CountingTokens(AccessTokens):
    """The real verifier, counting its calls."""

    calls = 0

    def verify(self, token: str) -> Principal:
        self.calls += 1
        return super().verify(token)


def small_app(settings: Settings, redis: Redis, tokens: AccessTokens, limited: bool) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"limiter": RateLimiter(Scripts.register(redis), settings), "tokens": tokens}

    app = FastAPI(lifespan=lifespan)
    problems.install(app)

    @app.get("/me")
    async def me(caller: AnyCaller) -> dict[str, str]:
        return {"subject": caller.subject, "role": caller.role.value}

    if limited:
        app.add_middleware(RateLimitMiddleware, trusted=[])
    return app


async def calls_per_request(settings: Settings, redis: Redis, limited: bool) -> list[int]:
    tokens = CountingTokens(settings, jwt_secret(settings))
    app = small_app(settings, redis, tokens, limited)
    seen = []
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for who, role in (("cust-a", Role.CUSTOMER), ("drv-x", Role.DRIVER)):
                before = tokens.calls
                r = await c.get("/me", headers=bearer(settings, who, role))
                assert r.status_code == 200, r.text
                assert r.json() == {"subject": who, "role": role.value}
                seen.append(tokens.calls - before)
            bad = await c.get("/me", headers={"Authorization": "Bearer not-a-token"})
            assert bad.status_code == 401  # the middleware let it through; the route refused
    return seen


async def test_the_route_reuses_the_caller_the_limiter_verified(
    settings: Settings, redis: Redis
) -> None:
    assert await calls_per_request(settings, redis, limited=True) == [1, 1]
    # Without the limiter the route verifies the token itself, once.
    assert await calls_per_request(settings, redis, limited=False) == [1, 1]
