"""Credentials for tests: access tokens minted with the test settings' secret."""

from __future__ import annotations

from rideflow.auth.principal import Role
from rideflow.auth.secret import jwt_secret
from rideflow.auth.tokens import AccessTokens
from rideflow.config import Settings


def access_token(
    settings: Settings, subject: str, role: Role | str, ttl_s: int | None = None
) -> str:
    """A valid access token for `subject` as `role`, signed as the app under `settings` expects."""
    tokens = AccessTokens(settings, jwt_secret(settings))
    return tokens.issue(subject, Role(role), ttl_s=ttl_s).token


def bearer(settings: Settings, subject: str, role: Role | str) -> dict[str, str]:
    """`Authorization` headers for `subject` as `role`."""
    return {"Authorization": f"Bearer {access_token(settings, subject, role)}"}
