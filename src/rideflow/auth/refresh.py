"""Refresh tokens: opaque random strings, kept in Redis only as SHA-256 digests with a TTL.

Each login starts a family; every refresh rotates (the token used is marked used, a new one is
issued in the family, atomically: `refresh_rotate.lua`). A used token presented again means a
copy is in someone else's hands: the whole family is revoked, the newest token with it. Logout
revokes the family; a password reset revokes every family of the user."""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import NamedTuple, cast

from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.errors import Unauthorized
from rideflow.redis import keys
from rideflow.redis.scripts import Scripts

log = logging.getLogger("rideflow.auth")


def digest(token: str) -> str:
    """The SHA-256 a secret is stored under (the token has 256 random bits: no salt needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Rotated(NamedTuple):
    user_id: str
    family: str
    token: str


class RefreshTokens:
    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings) -> None:
        self.redis, self.scripts = redis, scripts
        self.ttl_ms = settings.refresh_token_ttl_s * 1000

    async def issue(self, user_id: str) -> str:
        """The first token of a new family (a login)."""
        token, family = secrets.token_urlsafe(32), secrets.token_hex(12)
        await self.scripts.refresh_issue(
            keys=[
                keys.refresh_token(digest(token)),
                keys.refresh_family(family),
                keys.user_families(user_id),
            ],
            args=[family, user_id, self.ttl_ms],
        )
        return token

    async def rotate(self, token: str) -> Rotated:
        """A new token in the family of `token`, which is used up; `Unauthorized` for a token
        unknown, expired, revoked or used before (which revokes its family)."""
        presented = keys.refresh_token(digest(token))
        family, user_id = await self._owner(presented)
        if family is None or user_id is None:
            raise Unauthorized("the refresh token is not valid (unknown or expired); log in again")
        new = secrets.token_urlsafe(32)
        outcome = await self.scripts.refresh_rotate(
            keys=[
                presented,
                keys.refresh_family(family),
                keys.refresh_token(digest(new)),
                keys.user_families(user_id),
            ],
            args=[family, user_id, self.ttl_ms],
        )
        if outcome == "ok":
            return Rotated(user_id, family, new)
        if outcome == "reuse":
            log.warning("refresh token reused for user %s: family %s revoked", user_id, family)
            raise Unauthorized(
                "the refresh token was already used; every token of this login is revoked "
                "(if that was not you, change your password); log in again"
            )
        raise Unauthorized("the refresh token is not valid (revoked or expired); log in again")

    async def revoke(self, token: str) -> bool:
        """Revoke the family of `token` (logout); False when the token is unknown."""
        family, user_id = await self._owner(keys.refresh_token(digest(token)))
        if family is None or user_id is None:
            return False
        await self.revoke_family(user_id, family)
        return True

    async def revoke_family(self, user_id: str, family: str) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.delete(keys.refresh_family(family))
            p.zrem(keys.user_families(user_id), family)
            await p.execute()

    async def revoke_user(self, user_id: str) -> int:
        """Revoke every family of the user (password reset, account disabled); how many."""
        where = keys.user_families(user_id)
        families = cast(list[str], await self.redis.zrange(where, 0, -1))
        if not families:
            return 0
        async with self.redis.pipeline(transaction=True) as p:
            p.delete(*[keys.refresh_family(f) for f in families])
            p.zrem(where, *families)
            await p.execute()
        return len(families)

    async def _owner(self, token_key: str) -> tuple[str | None, str | None]:
        family, user_id = await self.redis.hmget(token_key, ["family", "user"])
        return cast(str | None, family), cast(str | None, user_id)
