"""`rideflow users create / disable / enable` as a real process on both record databases, and
`rideflow up` refusing to start in production without a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import api_client, run_rideflow
from tests.integration.test_accounts import account_settings, login, problem
from tests.servers import RedisServer, eventually

pytestmark = pytest.mark.timeout(180)


rideflow = run_rideflow


async def test_users_create_disable_enable(
    flushed: RedisServer, record_url: str, tmp_path: Path
) -> None:
    settings = account_settings(flushed.url, record_url, tmp_path)
    made = await rideflow(
        settings,
        *("users", "create", "--email", "Root@example.com", "--role", "ADMIN", "--name", "Root"),
        "--password-stdin",
        stdin="an admin passphrase\n",
    )
    assert made.returncode == 0, made.stderr
    assert (
        made.stdout.startswith("created ADMIN account u-") and "(Root@example.com)" in made.stdout
    )

    again = await rideflow(
        settings,
        *("users", "create", "--email", "root@EXAMPLE.com", "--name", "Other"),
        RIDEFLOW_ADMIN_PASSWORD="another passphrase",
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    create_x = ("users", "create", "--email", "x@example.com", "--name", "X")
    short = await rideflow(settings, *create_x, "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    driver = await rideflow(
        settings,
        *("users", "create", "--email", "d@example.com", "--name", "Dev", "--role", "driver"),
        *("--vehicle", "Bike", "--city", "blr"),
        RIDEFLOW_ADMIN_PASSWORD="a driver passphrase",
    )
    assert driver.returncode == 0 and "created DRIVER account" in driver.stdout, driver.stderr
    driver_id = driver.stdout.split()[3]

    async with api_client(settings) as c:
        r = await login(c, "root@example.com", "an admin passphrase")
        assert r.status_code == 200, r.text
        admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert (await c.get("/v1/admin/api-keys", headers=admin)).status_code == 200
        assert (await c.get("/v1/me", headers=admin)).json()["role"] == "ADMIN"
        pair = (await login(c, "d@example.com", "a driver passphrase")).json()
        assert (await c.get(f"/v1/drivers/{driver_id}")).json()["vehicle"] == "Bike"

        mine = {"Authorization": f"Bearer {pair['access_token']}"}
        assert (await c.get(f"/v1/drivers/{driver_id}", headers=mine)).status_code == 200

        off = await rideflow(settings, "users", "disable", "--email", "D@example.com")
        assert off.returncode == 0 and "1 login(s) revoked" in off.stdout, off.stderr
        assert "access tokens refused" in off.stdout
        assert problem(await login(c, "d@example.com", "a driver passphrase"), 403)
        r = await c.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert problem(r, 401)  # its login was revoked by the disable

        # The API process reads the revocation the CLI wrote: the access token it holds,
        # still unexpired, is refused on every route.
        async def refused() -> bool:
            r = await c.get(f"/v1/drivers/{driver_id}", headers=mine)
            return r.status_code == 401 and "revoked" in r.json()["detail"]

        await eventually(refused, 10, "the disabled driver's access token refused")
        on = await rideflow(settings, "users", "enable", "--email", "d@example.com")
        assert on.returncode == 0, on.stderr
        again = await login(c, "d@example.com", "a driver passphrase")
        assert again.status_code == 200
        fresh = {"Authorization": f"Bearer {again.json()['access_token']}"}
        assert (await c.get(f"/v1/drivers/{driver_id}", headers=fresh)).status_code == 200
        assert problem(await c.get(f"/v1/drivers/{driver_id}", headers=mine), 401)
    nobody = await rideflow(settings, "users", "disable", "--email", "nobody@example.com")
    assert nobody.returncode == 1 and "no account" in nobody.stderr
    # A driver's profile is made in Redis within the account's transaction: no Redis, no account.
    no_redis = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    create_e = ("users", "create", "--email", "e@example.com", "--name", "E", "--role", "driver")
    failed = await rideflow(no_redis, *create_e, RIDEFLOW_ADMIN_PASSWORD="a driver passphrase")
    assert failed.returncode == 1 and "Redis is unreachable" in failed.stderr, failed.stderr
    made_e = await rideflow(settings, *create_e, RIDEFLOW_ADMIN_PASSWORD="a driver passphrase")
    assert made_e.returncode == 0, made_e.stderr


async def test_up_refuses_production_without_a_secret(flushed: RedisServer, tmp_path: Path) -> None:
    settings = account_settings(flushed.url, f"sqlite+aiosqlite:///{tmp_path}/r.db", tmp_path)
    unset = settings.model_copy(update={"jwt_secret": None, "env": "production"})
    done = await rideflow(unset, "up")
    assert done.returncode == 1 and "RIDEFLOW_JWT_SECRET" in done.stderr, done.stderr
