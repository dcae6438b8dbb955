"""Contracts of the refresh-token scripts: a family and its first token, rotation, reuse that
revokes the family, the user's set of families pruned of expired ones."""

from __future__ import annotations

from redis.asyncio import Redis

from rideflow.redis import keys
from rideflow.redis.scripts import Scripts
from tests.scripts.conftest import now_ms

TTL = 60_000


async def issue(scripts: Scripts, token: str, family: str, user: str, ttl: int = TTL) -> None:
    assert await scripts.refresh_issue(
        keys=[keys.refresh_token(token), keys.refresh_family(family), keys.user_families(user)],
        args=[family, user, ttl],
    ) == 1  # fmt: skip


async def rotate(scripts: Scripts, old: str, new: str, family: str, user: str) -> str:
    reply = await scripts.refresh_rotate(
        keys=[
            keys.refresh_token(old),
            keys.refresh_family(family),
            keys.refresh_token(new),
            keys.user_families(user),
        ],
        args=[family, user, TTL],
    )
    return str(reply)


async def test_issue_starts_a_family_and_prunes_expired_ones(
    redis: Redis, scripts: Scripts
) -> None:
    await redis.zadd(keys.user_families("u"), {"gone": 1})  # expired long ago
    await issue(scripts, "t1", "f1", "u")
    assert await redis.hgetall(keys.refresh_token("t1")) == {
        "family": "f1",
        "user": "u",
        "state": "live",
    }
    assert (await redis.hgetall(keys.refresh_family("f1")))["user"] == "u"
    families = await redis.zrange(keys.user_families("u"), 0, -1, withscores=True)
    now = await now_ms(redis)
    assert [f for f, _ in families] == ["f1"] and now < families[0][1] <= now + TTL
    for key in (keys.refresh_token("t1"), keys.refresh_family("f1"), keys.user_families("u")):
        assert 0 < await redis.pttl(key) <= TTL


async def test_rotation_then_reuse_revokes_the_family(redis: Redis, scripts: Scripts) -> None:
    await issue(scripts, "t1", "f1", "u")
    assert await rotate(scripts, "t1", "t2", "f1", "u") == "ok"
    assert await redis.hget(keys.refresh_token("t1"), "state") == "used"
    assert await redis.hget(keys.refresh_token("t2"), "state") == "live"
    assert await rotate(scripts, "t2", "t3", "f1", "u") == "ok"
    # t1 again: reuse. The family goes, and with it t3, the newest.
    assert await rotate(scripts, "t1", "t4", "f1", "u") == "reuse"
    assert not await redis.exists(keys.refresh_family("f1"), keys.refresh_token("t4"))
    assert await redis.zrange(keys.user_families("u"), 0, -1) == []
    assert await rotate(scripts, "t3", "t5", "f1", "u") == "revoked"
    assert not await redis.exists(keys.refresh_token("t5"))


async def test_a_token_is_checked_against_the_family_and_user_named(
    redis: Redis, scripts: Scripts
) -> None:
    await issue(scripts, "t1", "f1", "u")
    await issue(scripts, "x1", "f2", "v")
    assert await rotate(scripts, "nope", "n", "f1", "u") == "unknown"
    assert await rotate(scripts, "t1", "n", "f2", "u") == "unknown"
    assert await rotate(scripts, "t1", "n", "f1", "v") == "unknown"
    assert not await redis.exists(keys.refresh_token("n"))
    assert await redis.hget(keys.refresh_token("t1"), "state") == "live"
    assert await rotate(scripts, "t1", "t2", "f1", "u") == "ok"
