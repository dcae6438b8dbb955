"""Helpers for Redis Streams read through consumer groups."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

DEAD_CONSUMER_IDLE_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry delivered to a consumer; `id` is '' for work from elsewhere (a retry
    set, say), `reclaimed` when it was delivered before (to another consumer, or to this one
    before an outage)."""

    stream: str
    id: str
    fields: dict[str, str]
    reclaimed: bool = False

    def reclaimed_copy(self) -> Entry:
        """The same entry, marked as delivered before."""
        return replace(self, reclaimed=True)


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create `group` on `stream` (and the stream) unless it exists. From id 0: entries added
    before any consumer ran are not skipped."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def parse_read(reply: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply (decoded responses), in stream order."""
    streams = cast(list[tuple[str, list[tuple[str, dict[str, str] | None]]]], reply or [])
    return [
        Entry(stream, entry_id, fields or {})
        for stream, entries in streams
        for entry_id, fields in entries
    ]


async def trim_acknowledged(
    redis: Redis, stream: str, group: str, *, approximate: bool = True
) -> int:
    """Trim acknowledged entries only: nothing at or after the oldest pending or undelivered
    entry of any group goes; consumers of `group` long dead with nothing pending are removed.
    Returns how many entries were trimmed. `approximate` (`~`) lets Redis free whole nodes only,
    which is cheaper and leaves some trimmable entries for later."""
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
        return int(await redis.xtrim(stream, minid=floor, approximate=approximate))
    return 0


def id_lt(a: str, b: str) -> bool:
    """Stream id order."""
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) < (int(bms), int(bseq or 0))
