"""Credentials for tests: access tokens minted with the test settings' secret. The app's clients
(`tests.conftest.api_client`) act as `ADMIN_ID` unless told otherwise."""

from __future__ import annotations

from rideflow.auth.principal import Role
from rideflow.auth.secret import jwt_secret
from rideflow.auth.tokens import AccessTokens
from rideflow.config import Settings

TEST_JWT_SECRET = "tests-only-secret-" + "x" * 32
"""The signing secret of every test's settings (`tests.conftest.settings_for`)."""


def access_token(
    settings: Settings, subject: str, role: Role | str, ttl_s: int | None = None
) -> str:
    """A valid access token for `subject` as `role`, signed as the app under `settings` expects."""
    tokens = AccessTokens(settings, jwt_secret(settings))
    return tokens.issue(subject, Role(role), ttl_s=ttl_s).token


def bearer(settings: Settings, subject: str, role: Role | str) -> dict[str, str]:
    """`Authorization` headers for `subject` as `role`."""
    return {"Authorization": f"Bearer {access_token(settings, subject, role)}"}


ADMIN_ID = "admin-1"
"""The ADMIN account the test clients act as by default."""


def admin(settings: Settings) -> dict[str, str]:
    """`Authorization` headers of the tests' ADMIN."""
    return bearer(settings, ADMIN_ID, Role.ADMIN)


def customer(settings: Settings, subject: str) -> dict[str, str]:
    """`Authorization` headers of the CUSTOMER account `subject`."""
    return bearer(settings, subject, Role.CUSTOMER)


def driver(settings: Settings, subject: str) -> dict[str, str]:
    """`Authorization` headers of the DRIVER account `subject`."""
    return bearer(settings, subject, Role.DRIVER)


def any_admin() -> dict[str, str]:
    """`Authorization` headers of the tests' ADMIN for any process started with test settings
    (for helpers that are handed a port, not settings)."""
    return admin(Settings(jwt_secret=TEST_JWT_SECRET))
