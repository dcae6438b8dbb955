"""Password-reset tokens: random, single use, short-lived. Redis keeps only their SHA-256, ->
the account id and a stamp of the password hash they were issued against, with the TTL; `GETDEL`
burns one as it is read. A token issued before the password last changed is refused: one reset
ends every other reset link in flight."""

from __future__ import annotations

import secrets
from typing import NamedTuple, cast

from redis.asyncio import Redis

from rideflow.auth.refresh import digest
from rideflow.config import Settings
from rideflow.redis import keys


class Reset(NamedTuple):
    account_id: str
    stamp: str


def stamp(password_hash: str) -> str:
    """What a reset token remembers of the password it may replace."""
    return digest(password_hash)[:16]


class PasswordResets:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis, self.ttl_s = redis, settings.password_reset_ttl_s

    async def issue(self, account_id: str, password_hash: str) -> str:
        token = secrets.token_urlsafe(32)
        value = f"{account_id}|{stamp(password_hash)}"
        await self.redis.set(keys.password_reset(digest(token)), value, ex=self.ttl_s)
        return token

    async def consume(self, token: str) -> Reset | None:
        """The account the token may reset, once; None when unknown, used or expired."""
        value = cast(str | None, await self.redis.getdel(keys.password_reset(digest(token))))
        if value is None:
            return None
        account_id, _, issued_against = value.partition("|")
        return Reset(account_id, issued_against)
