"""Password-reset tokens: random, single use, short-lived; Redis keeps only their SHA-256 (->
the account id) with the TTL, and `GETDEL` burns one as it is read."""

from __future__ import annotations

import secrets
from typing import cast

from redis.asyncio import Redis

from rideflow.auth.refresh import digest
from rideflow.config import Settings
from rideflow.redis import keys


class PasswordResets:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis, self.ttl_s = redis, settings.password_reset_ttl_s

    async def issue(self, account_id: str) -> str:
        token = secrets.token_urlsafe(32)
        await self.redis.set(keys.password_reset(digest(token)), account_id, ex=self.ttl_s)
        return token

    async def consume(self, token: str) -> str | None:
        """The account the token may reset, once; None when unknown, used or expired."""
        return cast(str | None, await self.redis.getdel(keys.password_reset(digest(token))))
