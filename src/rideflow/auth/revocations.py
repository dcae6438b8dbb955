"""Access tokens revoked before they expire: an account disabled or its password reset.

An access token is checked without I/O (`AccessTokens.verify`), so revoking one is a list each
process holds: the account ids revoked in the last access-token lifetime, each with the time it
happened; a token of such an account issued at or before that time is refused. The list lives in
Redis (`keys.revoked_subjects`, trimmed to one lifetime) and every API process reads what is new
in it every `POLL_S`: a disabled user is refused everywhere within about a second, and a process
that starts later, or lost Redis for a while, catches up from the same list."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from rideflow.config import Settings
from rideflow.redis import keys

log = logging.getLogger("rideflow.auth")
POLL_S = 1.0


def keep_for(settings: Settings) -> float:
    """How long a revocation must be kept: the longest an access token stays valid."""
    return float(settings.access_token_ttl_s + settings.jwt_leeway_s)


async def revoke_subject(redis: Redis, subject: str, keep_s: float) -> float:
    """Refuse every access token of `subject` issued until now; when (epoch s). The list
    keeps `keep_s` (at least the access tokens' lifetime and leeway)."""
    now = time.time()
    where = keys.revoked_subjects()
    async with redis.pipeline(transaction=True) as p:
        p.zadd(where, {subject: now})
        p.zremrangebyscore(where, "-inf", now - keep_s)
        p.expire(where, int(keep_s) + 1)
        await p.execute()
    return now


class Revocations:
    """One process's copy of the revoked list, refreshed by a task of its own."""

    def __init__(self, redis: Redis, keep_s: float) -> None:
        self.redis, self.keep_s = redis, keep_s
        self.revoked: dict[str, float] = {}
        """Account id -> tokens issued at or before this (epoch s) are refused."""
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.listeners: list[Callable[[str], None]] = []
        """Told each account id newly revoked (the socket gateway closes its sockets)."""

    async def revoke(self, subject: str) -> None:
        """Refuse `subject`'s tokens issued until now, in this process at once and in every
        other within `POLL_S`."""
        self.revoked[subject] = await revoke_subject(self.redis, subject, self.keep_s)
        for listener in self.listeners:
            listener(subject)

    def refused(self, subject: str, issued_at: float) -> bool:
        at = self.revoked.get(subject)
        return at is not None and issued_at <= at

    async def load(self) -> None:
        """Read the list. Entries are forgotten one token lifetime after they were made (every
        token they refuse has expired by then), not when Redis loses them."""
        raw = cast(
            list[tuple[str, float]],
            await self.redis.zrange(keys.revoked_subjects(), 0, -1, withscores=True),
        )
        fresh = {subject: at for subject, at in raw if self.revoked.get(subject, 0.0) < at}
        oldest = time.time() - self.keep_s
        self.revoked = {s: at for s, at in self.revoked.items() if at >= oldest}
        self.revoked.update(fresh)
        for subject in fresh:
            for listener in self.listeners:
                listener(subject)

    async def start(self) -> None:
        """Read the list, then keep reading it (a process that starts while Redis is down
        reads it once Redis is back)."""
        try:
            await self.load()
        except RedisError as exc:
            log.error("revoked access tokens could not be read: %s", exc)
        self.task = asyncio.create_task(self._poll(), name="token-revocations")

    async def _poll(self) -> None:
        # Not `while True`: a read cancelled inside redis-py can come back as a connection
        # error instead of the cancellation, which this loop would otherwise outlive.
        while not self.stopping:
            await asyncio.sleep(POLL_S)
            try:
                await self.load()
            except RedisError as exc:  # kept as it was; read again once Redis is back
                log.debug("could not read revoked tokens: %s", exc)

    async def stop(self) -> None:
        self.stopping = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
