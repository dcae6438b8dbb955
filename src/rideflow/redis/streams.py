"""Helpers for Redis Streams read through consumer groups."""

from __future__ import annotations

from redis.asyncio import Redis

DEAD_CONSUMER_IDLE_MS = 3_600_000


async def trim_acknowledged(redis: Redis, stream: str, group: str) -> int:
    """Trim acknowledged entries only: nothing at or after the oldest pending or undelivered
    entry of any group goes; consumers of `group` long dead with nothing pending are removed.
    Returns how many entries were trimmed."""
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return 0
    floor: str | None = None
    for g in groups:
        pending = await redis.xpending(stream, g["name"])
        oldest = pending["min"] if pending["pending"] else g["last-delivered-id"]
        floor = oldest if floor is None or id_lt(oldest, floor) else floor
        if g["name"] == group:
            for consumer in await redis.xinfo_consumers(stream, group):
                if consumer["pending"] == 0 and consumer["idle"] > DEAD_CONSUMER_IDLE_MS:
                    await redis.xgroup_delconsumer(stream, group, consumer["name"])
    if floor and floor != "0-0":
        return int(await redis.xtrim(stream, minid=floor))
    return 0


def id_lt(a: str, b: str) -> bool:
    """Stream id order."""
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) < (int(bms), int(bseq or 0))
