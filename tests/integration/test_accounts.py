"""Accounts and tokens on both record databases, against a real Redis: register, log in, /v1/me;
emails unique whatever their case; a wrong password and an unknown email answered alike; login
limits per account and per address; refresh rotation, reuse detection, logout; disabled
accounts; password reset through a real job worker and the outbox; service API keys."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from rideflow.auth.principal import Role
from rideflow.config import RatePolicy, Settings
from rideflow.redis import keys
from tests.auth import bearer
from tests.conftest import Workers, api_client, settings_for
from tests.servers import RedisServer, eventually

pytestmark = pytest.mark.timeout(120)
PASSWORD = "correct horse battery"
CHEAP_HASHES = {"password_hash_time_cost": 1, "password_hash_memory_kib": 1024}
"""argon2id made cheap for tests (the default costs ~0.5 s of CPU per hash here)."""


def account_settings(redis_url: str, record_url: str, tmp_path: Path, **kw: Any) -> Settings:
    return settings_for(
        redis_url, database_url=record_url, data_dir=str(tmp_path), **{**CHEAP_HASHES, **kw}
    )


@pytest.fixture
async def settings(flushed: RedisServer, record_url: str, tmp_path: Path) -> Settings:
    return account_settings(flushed.url, record_url, tmp_path)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, headers={}) as c:
        yield c


async def register(c: httpx.AsyncClient, email: str, **kw: Any) -> dict[str, Any]:
    body = {"email": email, "password": PASSWORD, "name": "Asha Rao", **kw}
    r = await c.post("/v1/auth/register", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def login(
    c: httpx.AsyncClient, email: str, password: str = PASSWORD, **headers: str
) -> httpx.Response:
    return await c.post(
        "/v1/auth/token", data={"username": email, "password": password}, headers=headers
    )


async def tokens(c: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    r = await login(c, email, password)
    assert r.status_code == 200, r.text
    return dict(r.json())


def auth(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def refresh(c: httpx.AsyncClient, token: str) -> httpx.Response:
    return await c.post("/v1/auth/refresh", json={"refresh_token": token})


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return dict(r.json())


async def test_register_log_in_and_me(client: httpx.AsyncClient) -> None:
    account = await register(client, "Asha@Example.com")
    assert account["id"].startswith("u-") and account["role"] == "CUSTOMER"
    assert account["email"] == "Asha@Example.com" and account["disabled"] is False
    assert "password" not in str(account) and "argon2" not in str(account)

    pair = await tokens(client, "asha@example.COM")  # logs in whatever the case
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 900
    assert pair["refresh_token"]
    me = await client.get("/v1/me", headers=auth(pair))
    assert me.status_code == 200 and me.json() == account
    assert (await client.get("/v1/me")).status_code == 401


async def test_a_driver_account_is_its_driver_profile(client: httpx.AsyncClient) -> None:
    account = await register(
        client, "rohit@example.com", role="DRIVER", name="Rohit", vehicle="Bike KA01", city="blr"
    )
    pair = await tokens(client, "rohit@example.com")
    me = (await client.get("/v1/me", headers=auth(pair))).json()
    assert me["role"] == "DRIVER" and me["id"] == account["id"]
    driver = await client.get(f"/v1/drivers/{account['id']}", headers=auth(pair))
    assert driver.status_code == 200, driver.text
    assert driver.json()["name"] == "Rohit" and driver.json()["vehicle"] == "Bike KA01"


async def test_registration_refusals(client: httpx.AsyncClient) -> None:
    await register(client, "dup@example.com")
    r = await client.post(
        "/v1/auth/register", json={"email": "DUP@example.com", "password": PASSWORD, "name": "x"}
    )
    assert "already exists" in problem(r, 409)["detail"]
    cases = [
        ({"role": "ADMIN"}, "role"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 129}, "password"),
        ({"email": "not-an-email"}, "email"),
        ({"vehicle": "Bike"}, "vehicle"),  # a customer has no vehicle
        ({"role": "DRIVER", "city": "nowhere"}, "city"),
    ]
    for change, field in cases:
        body = {"email": "new@example.com", "password": PASSWORD, "name": "x", **change}
        r = await client.post("/v1/auth/register", json=body)
        assert [e["field"] for e in problem(r, 422)["errors"]] == [field], (change, r.text)
    # None of the refusals left an account behind: the email is still free.
    await register(client, "new@example.com")


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "asha@example.com")
    wrong = await login(client, "asha@example.com", "not the password")
    unknown = await login(client, "nobody@example.com", "not the password")
    assert problem(wrong, 401) == problem(unknown, 401)
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]
    assert problem(await login(client, "asha@example.com", ""), 422)["errors"][0]["field"] == (
        "password"
    )


async def test_login_attempts_are_limited_per_account_and_per_address(
    flushed: RedisServer, record_url: str, tmp_path: Path
) -> None:
    settings = account_settings(
        flushed.url,
        record_url,
        tmp_path,
        trusted_proxies=["127.0.0.0/8"],  # the test names its client in X-Forwarded-For
        login_account_limit=RatePolicy(algorithm="fixed_window", limit=3, window_s=600),
        login_ip_limit=RatePolicy(algorithm="fixed_window", limit=5, window_s=600),
    )
    async with api_client(settings, headers={}) as c:
        await register(c, "asha@example.com")
        # Per account: three attempts (from three addresses), the right password on the last.
        for n, password in enumerate(["bad", "bad", PASSWORD]):
            r = await login(c, "asha@example.com", password, **{"x-forwarded-for": f"10.0.0.{n}"})
            assert r.status_code == (200 if password == PASSWORD else 401)
        r = await login(c, "asha@example.com", **{"x-forwarded-for": "10.0.0.9"})
        assert "for this account" in problem(r, 429)["detail"]
        assert 0 < int(r.headers["retry-after"]) <= 600
        # Another account is not held back by it.
        await register(c, "ravi@example.com")
        r = await login(c, "ravi@example.com", **{"x-forwarded-for": "10.0.0.9"})
        assert r.status_code == 200

        # Per address: five attempts from one address whatever the emails (two were above),
        # then 429 for any email.
        for n in range(3):
            r = await login(c, f"guess{n}@example.com", "x", **{"x-forwarded-for": "10.0.0.9"})
            assert r.status_code == 401
        r = await login(c, "ravi@example.com", **{"x-forwarded-for": "10.0.0.9"})
        assert "from this address" in problem(r, 429)["detail"]
        assert int(r.headers["retry-after"]) > 0
        r = await login(c, "ravi@example.com", **{"x-forwarded-for": "10.0.0.10"})
        assert r.status_code == 200


async def test_refresh_rotates_and_a_reused_token_revokes_its_family(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await register(client, "asha@example.com")
    first = await tokens(client, "asha@example.com")
    other_login = await tokens(client, "asha@example.com")

    r = await refresh(client, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/v1/me", headers=auth(second))).status_code == 200
    third = (await refresh(client, second["refresh_token"])).json()

    # The first token again: it was used, so someone holds a copy; the family is revoked ...
    r = await refresh(client, first["refresh_token"])
    assert "already used" in problem(r, 401)["detail"]
    # ... the newest token of that family with it ...
    assert "revoked" in problem(await refresh(client, third["refresh_token"]), 401)["detail"]
    # ... while the other login goes on.
    assert (await refresh(client, other_login["refresh_token"])).status_code == 200
    assert problem(await refresh(client, "x" * 43), 401)

    # Redis holds digests only: no token is in any key name or value.
    secrets = {first["refresh_token"], second["refresh_token"], third["refresh_token"]}
    async for key in redis.scan_iter("rf:{auth}:*"):
        kind = await redis.type(key)
        values = await redis.hgetall(key) if kind == "hash" else {}
        text = key + str(values)
        assert not any(s in text for s in secrets)


async def test_logout_revokes_the_login(client: httpx.AsyncClient) -> None:
    await register(client, "asha@example.com")
    pair = await tokens(client, "asha@example.com")
    rotated = (await refresh(client, pair["refresh_token"])).json()
    r = await client.post("/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]})
    assert r.status_code == 204
    assert problem(await refresh(client, rotated["refresh_token"]), 401)
    # Logging out again, or with a token never issued, answers the same.
    r = await client.post("/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]})
    assert r.status_code == 204


async def test_a_disabled_account_is_refused(
    client: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    await register(client, "asha@example.com")
    pair = await tokens(client, "asha@example.com")
    async with accounts_of(settings) as (accounts, _):
        await accounts.set_disabled("ASHA@example.com", True)
    r = await login(client, "asha@example.com")
    assert "disabled" in problem(r, 403)["detail"]
    # The wrong password still gets the answer an unknown email gets.
    assert problem(await login(client, "asha@example.com", "wrong one"), 401)
    assert "disabled" in problem(await refresh(client, pair["refresh_token"]), 403)["detail"]
    assert problem(await client.get("/v1/me", headers=auth(pair)), 403)
    # No reset email for a disabled account (the answer is the same 202).
    r = await client.post("/v1/auth/password-reset", json={"email": "asha@example.com"})
    assert r.status_code == 202
    assert await redis.hget(keys.job_stats("send_email"), "submitted") is None

    async with accounts_of(settings) as (accounts, _):
        await accounts.set_disabled("asha@example.com", False)
    assert (await login(client, "asha@example.com")).status_code == 200
    # The refresh refused while disabled revoked its family for good.
    assert problem(await refresh(client, pair["refresh_token"]), 401)


def outbox_messages(settings: Settings, to: str) -> list[email.message.EmailMessage]:
    folder = Path(settings.data_dir) / "outbox"
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        if message["To"] == to:
            assert path.stat().st_mode & 0o777 == 0o600
            found.append(message)
    return found


async def reset_token(settings: Settings, to: str) -> str:
    async def arrived() -> list[email.message.EmailMessage]:
        return outbox_messages(settings, to)

    [message] = await eventually(arrived, 20, f"the reset email to {to}")
    return reset_token_in(message)


def reset_token_in(message: email.message.EmailMessage) -> str:
    body = message.get_content()
    match = re.search(r"^([A-Za-z0-9_-]{40,})$", body, re.MULTILINE)
    assert match, body
    return match.group(1)


async def test_password_reset_through_the_job_worker_and_the_outbox(
    client: httpx.AsyncClient, settings: Settings, workers: Workers, redis: Redis
) -> None:
    workers.jobs(settings)
    await register(client, "Asha@example.com")
    before = await tokens(client, "asha@example.com")

    r = await client.post("/v1/auth/password-reset", json={"email": "ASHA@example.com"})
    assert r.status_code == 202
    token = await reset_token(settings, "Asha@example.com")
    r = await client.post("/v1/auth/password-reset", json={"email": "asha@example.com"})
    assert r.status_code == 202

    async def both_sent() -> bool:
        return len(outbox_messages(settings, "Asha@example.com")) == 2

    await eventually(both_sent, 20, "the second reset email")
    tokens_sent = [reset_token_in(m) for m in outbox_messages(settings, "Asha@example.com")]
    [other] = set(tokens_sent) - {token}
    # An unknown email gets the same answer and queues nothing.
    submitted = await redis.hget(keys.job_stats("send_email"), "submitted")
    r = await client.post("/v1/auth/password-reset", json={"email": "nobody@example.com"})
    assert r.status_code == 202
    assert await redis.hget(keys.job_stats("send_email"), "submitted") == submitted

    new = {"token": token, "new_password": "a brand new passphrase"}
    short = await client.post("/v1/auth/password-reset/confirm", json={**new, "new_password": "x"})
    assert problem(short, 422)["errors"][0]["field"] == "new_password"
    assert (await client.get("/v1/me", headers=auth(before))).status_code == 200
    r = await client.post("/v1/auth/password-reset/confirm", json=new)
    assert r.status_code == 204, r.text
    assert problem(await login(client, "asha@example.com"), 401)
    after = await tokens(client, "asha@example.com", "a brand new passphrase")
    # Every login from before the reset is over, its access token included; the new one,
    # issued within the same second, is good.
    assert problem(await refresh(client, before["refresh_token"]), 401)
    assert "revoked" in problem(await client.get("/v1/me", headers=auth(before)), 401)["detail"]
    assert (await client.get("/v1/me", headers=auth(after))).status_code == 200
    # The token was for one use ...
    again = await client.post("/v1/auth/password-reset/confirm", json=new)
    assert "not valid" in problem(again, 401)["detail"]
    # ... and the other one sent before the password changed is void.
    r = await client.post("/v1/auth/password-reset/confirm", json={**new, "token": other})
    assert "password changed" in problem(r, 401)["detail"]
    assert (await login(client, "asha@example.com", "a brand new passphrase")).status_code == 200


async def test_a_reset_token_expires(
    flushed: RedisServer, record_url: str, tmp_path: Path, workers: Workers, redis: Redis
) -> None:
    settings = account_settings(flushed.url, record_url, tmp_path, password_reset_ttl_s=1)
    workers.jobs(settings)
    async with api_client(settings, headers={}) as c:
        await register(c, "asha@example.com")
        assert (
            await c.post("/v1/auth/password-reset", json={"email": "asha@example.com"})
        ).status_code == 202
        token = await reset_token(settings, "asha@example.com")

        async def expired() -> bool:
            return not [k async for k in redis.scan_iter(keys.password_reset("*"))]

        await eventually(expired, 10, "the reset token to expire")
        new = {"token": token, "new_password": "a brand new passphrase"}
        r = await c.post("/v1/auth/password-reset/confirm", json=new)
        assert problem(r, 401)
        assert (await login(c, "asha@example.com")).status_code == 200


async def test_api_keys_are_made_shown_once_listed_used_and_revoked(
    client: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    admin = bearer(settings, "u-admin", Role.ADMIN)
    customer = bearer(settings, "u-someone", Role.CUSTOMER)
    body = {"name": "ops-backend", "role": "ADMIN"}
    assert problem(await client.post("/v1/admin/api-keys", json=body, headers=customer), 403)
    assert problem(await client.post("/v1/admin/api-keys", json=body), 401)

    r = await client.post("/v1/admin/api-keys", json=body, headers=admin)
    assert r.status_code == 201, r.text
    made = r.json()
    key = made["key"]
    assert key.startswith(f"rfk_{made['id']}_") and made["prefix"] == key[: len(made["prefix"])]
    assert made["created_by"] == "u-admin" and made["role"] == "ADMIN"
    weak = (
        await client.post(
            "/v1/admin/api-keys", json={"name": "merchant", "role": "CUSTOMER"}, headers=admin
        )
    ).json()

    # The key works as X-API-Key ...
    listed = await client.get("/v1/admin/api-keys", headers={"X-API-Key": key})
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()["keys"]] == [made["id"], weak["id"]]
    assert "rfk_" not in str([k for k in listed.json()["keys"] if "key" in k])
    assert all("key" not in k for k in listed.json()["keys"])
    # ... and as the bearer token (a scraper may send only `Authorization`) ...
    as_bearer = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/v1/admin/api-keys", headers=as_bearer)).status_code == 200
    # ... a CUSTOMER key may not do what only ADMIN may ...
    r = await client.get("/v1/admin/api-keys", headers={"X-API-Key": weak["key"]})
    assert problem(r, 403)
    r = await client.get("/v1/admin/api-keys", headers={"Authorization": f"Bearer {weak['key']}"})
    assert problem(r, 403)
    # ... it works from SQL when its cache entry is gone ...
    async for cached in redis.scan_iter(keys.api_key("*")):
        await redis.delete(cached)
    assert (await client.get("/v1/admin/api-keys", headers={"X-API-Key": key})).status_code == 200
    # ... a made-up key is refused ...
    r = await client.get("/v1/admin/api-keys", headers={"X-API-Key": key[:-4] + "AAAA"})
    assert problem(r, 401)

    # ... and a revoked key is refused from the very next request.
    assert (
        await client.delete(f"/v1/admin/api-keys/{made['id']}", headers=admin)
    ).status_code == 204
    r = await client.get("/v1/admin/api-keys", headers={"X-API-Key": key})
    assert "API key" in problem(r, 401)["detail"]
    assert problem(await client.get("/v1/admin/api-keys", headers=as_bearer), 401)
    async for cached in redis.scan_iter(keys.api_key("*")):
        await redis.delete(cached)
    assert problem(await client.get("/v1/admin/api-keys", headers={"X-API-Key": key}), 401)
    keys_now = (await client.get("/v1/admin/api-keys", headers=admin)).json()["keys"]
    assert [k["revoked_at"] is not None for k in keys_now] == [True, False]
    assert (
        await client.delete(f"/v1/admin/api-keys/{made['id']}", headers=admin)
    ).status_code == 204
    assert problem(await client.delete("/v1/admin/api-keys/abcdef", headers=admin), 404)
    r = await client.get("/v1/me", headers={"X-API-Key": weak["key"]})
    assert "has no account" in problem(r, 404)["detail"]


async def test_a_hash_made_with_other_costs_is_upgraded_at_login(
    flushed: RedisServer, record_url: str, tmp_path: Path
) -> None:
    async with api_client(account_settings(flushed.url, record_url, tmp_path), headers={}) as c:
        await register(c, "asha@example.com")
    stronger = account_settings(flushed.url, record_url, tmp_path, password_hash_time_cost=2)
    async with accounts_of(stronger) as (accounts, _):
        old = await accounts.find("asha@example.com")
        assert old is not None and ",t=1," in old.password_hash
        async with api_client(stronger, headers={}) as c:
            assert (await login(c, "asha@example.com")).status_code == 200
        new = await accounts.find("asha@example.com")
        assert new is not None and ",t=2," in new.password_hash
        assert await accounts.authenticate("asha@example.com", PASSWORD) is not None


@asynccontextmanager
async def accounts_of(settings: Settings) -> AsyncIterator[Any]:
    """The account store and refresh tokens, as `rideflow users` builds them."""
    from rideflow.cli import _accounts

    async with _accounts(settings) as pair:
        yield pair
