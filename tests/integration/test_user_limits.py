"""Rate limits per user once signed in, per address otherwise, under each role's policy; the
request log names the same client. (Per-address counting and each algorithm:
tests/integration/test_ratelimit.py.)"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from rideflow.auth.principal import Role
from rideflow.config import RatePolicy, Settings
from rideflow.redis import keys
from tests.auth import access_token, bearer
from tests.conftest import api_client

PATH = "/v1/rides/blr-none"
"""A cheap route every role may read (404 for all of them)."""
PROXY = "127.0.0.0/8"
"""The in-process transport's peer: trusted as a proxy, so `X-Forwarded-For` sets the address."""


def limited(settings: Settings, limit: int, **extra: Any) -> Settings:
    """Every route under one fixed-window policy of `limit` per minute."""
    return settings.model_copy(
        update={
            "rate_limit_enabled": True,
            "rate_policies": {
                "all": RatePolicy(algorithm="fixed_window", limit=limit, window_s=60)
            },
            "rate_routes": [],
            "rate_default_policy": "all",
            "trusted_proxies": [PROXY],
            **extra,
        }
    )


def at(address: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"X-Forwarded-For": address, **(headers or {})}


def outcome(status: int) -> str:
    return "limited" if status == 429 else "served"


async def test_two_users_behind_one_address_each_get_their_own_budget(
    settings: Settings, redis: Redis
) -> None:
    s = limited(settings, 2)
    seen: Counter[tuple[str, str]] = Counter()
    async with api_client(s, headers={}) as c:
        for user in ("cust-a", "cust-b"):
            for _ in range(3):
                r = await c.get(PATH, headers=at("203.0.113.7", bearer(s, user, Role.CUSTOMER)))
                seen[(user, outcome(r.status_code))] += 1
        # The address itself still has its whole budget for anonymous calls.
        anonymous = await c.get(PATH, headers=at("203.0.113.7"))
    assert seen == Counter(
        {
            ("cust-a", "served"): 2,
            ("cust-a", "limited"): 1,
            ("cust-b", "served"): 2,
            ("cust-b", "limited"): 1,
        }
    )
    assert anonymous.status_code != 429
    assert await redis.exists(keys.rate_limit("all", "user:cust-a")) == 1
    assert await redis.exists(keys.rate_limit("all", "user:cust-b")) == 1


async def test_a_user_keeps_their_budget_across_addresses(settings: Settings, redis: Redis) -> None:
    s = limited(settings, 2)
    headers = bearer(s, "cust-a", Role.CUSTOMER)
    async with api_client(s, headers={}) as c:
        codes = [
            (await c.get(PATH, headers=at(address, headers))).status_code
            for address in ("203.0.113.7", "198.51.100.9", "192.0.2.1")
        ]
    assert [outcome(code) for code in codes] == ["served", "served", "limited"]


async def test_anonymous_calls_are_limited_per_address(settings: Settings, redis: Redis) -> None:
    s = limited(settings, 2)
    seen: Counter[tuple[str, str]] = Counter()
    async with api_client(s, headers={}) as c:
        for address in ("203.0.113.7", "198.51.100.9"):
            for _ in range(3):
                r = await c.get(PATH, headers=at(address))
                seen[(address, outcome(r.status_code))] += 1
    assert seen == Counter(
        {
            ("203.0.113.7", "served"): 2,
            ("203.0.113.7", "limited"): 1,
            ("198.51.100.9", "served"): 2,
            ("198.51.100.9", "limited"): 1,
        }
    )
    assert await redis.exists(keys.rate_limit("all", "ip:203.0.113.7")) == 1


async def test_a_bad_token_or_an_api_key_is_counted_by_address(
    settings: Settings, redis: Redis
) -> None:
    s = limited(settings, 3)
    foreign = settings.model_copy(update={"jwt_secret": SecretStr("another-key-" + "y" * 32)})
    tries = [
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {access_token(foreign, 'cust-a', Role.CUSTOMER)}"},
        {"X-API-Key": "rf_live_made_up"},
        {},
    ]
    async with api_client(s, headers={}) as c:
        codes = [(await c.get(PATH, headers=at("203.0.113.7", h))).status_code for h in tries]
        user = await c.get(PATH, headers=at("203.0.113.7", bearer(s, "cust-a", Role.CUSTOMER)))
    # One budget of 3 for the address: the fourth call is refused, whatever it carried.
    assert [outcome(code) for code in codes] == ["served"] * 3 + ["limited"]
    assert user.status_code != 429  # the valid token's user has a budget of their own
    found = {k async for k in redis.scan_iter(match=keys.rate_limit("all", "*"))}
    assert found == {
        keys.rate_limit("all", "ip:203.0.113.7"),
        keys.rate_limit("all", "user:cust-a"),
    }


async def test_a_role_gets_its_policy(settings: Settings, redis: Redis) -> None:
    s = limited(settings, 2, rate_role_multipliers={Role.ADMIN: 3.0, Role.DRIVER: 0.5})
    budgets: dict[str, int] = {}
    policies: dict[str, str] = {}
    async with api_client(s, headers={}) as c:
        for role, who in ((Role.ADMIN, "adm-1"), (Role.CUSTOMER, "cust-1"), (Role.DRIVER, "d-1")):
            headers = bearer(s, who, role)
            served = 0
            for _ in range(10):
                r = await c.get(PATH, headers=headers)
                if r.status_code == 429:
                    break
                policies[role] = r.headers["RateLimit-Policy"]
                served += 1
            budgets[role] = served
    assert budgets == {"ADMIN": 6, "CUSTOMER": 2, "DRIVER": 1}
    assert policies == {
        "ADMIN": '"all";q=6;w=60',
        "CUSTOMER": '"all";q=2;w=60',
        "DRIVER": '"all";q=1;w=60',
    }


async def test_the_request_log_names_the_client_as_the_limiter_counts_it(
    settings: Settings, redis: Redis
) -> None:
    s = limited(settings, 100, request_log_flush_ms=20)
    async with api_client(s, headers={}) as c:
        await c.get(PATH, headers=bearer(s, "cust-a", Role.CUSTOMER))
        await c.get(PATH, headers=at("203.0.113.7"))
        await c.get(PATH, headers={"Authorization": "Bearer not-a-token"})
    clients = [f["client"] for _, f in await redis.xrange(keys.request_log())]
    assert clients == ["user:cust-a", "ip:203.0.113.7", "ip:127.0.0.1"]
