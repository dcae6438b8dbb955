"""What the recorder reads, and how much of it is not recorded yet (its backlog)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.redis import keys


def recorder_streams(settings: Settings, cities: Sequence[str] | None = None) -> list[str]:
    """Every configured city's event stream, the request log and the finished jobs."""
    codes = cities or [c.code for c in settings.cities]
    return [*(keys.city_events(c) for c in codes), keys.request_log(), keys.jobs_finished()]


async def backlog(redis: Redis, streams: Sequence[str]) -> int:
    """Entries the recorder group has not acknowledged: pending plus not yet delivered (the
    group's lag; the stream's length when Redis cannot tell, or when no recorder ever ran)."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.exists(stream)
        exists = await pipe.execute()
    present = [s for s, e in zip(streams, exists, strict=True) if e]
    if not present:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for stream in present:
            pipe.xinfo_groups(stream)
            pipe.xlen(stream)
        replies = await pipe.execute()
    total = 0
    for i in range(0, len(replies), 2):
        groups: list[dict[str, Any]] = replies[i]
        length = int(replies[i + 1])
        group = next((g for g in groups if g["name"] == keys.RECORDER_GROUP), None)
        if group is None:
            total += length
            continue
        lag = group.get("lag")
        total += int(group.get("pending") or 0) + (length if lag is None else int(lag))
    return total
