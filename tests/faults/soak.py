"""What the soak watches (`tests/faults/test_soak.py`): each process's resident memory, the
Redis keyspace against its baseline, and the pending entries of every consumer group; and the
keys a finished run may leave behind, each with the reason it stays."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

LEFT_BEHIND: tuple[tuple[str, str], ...] = (
    (r"rf:\{\w+\}:leaderboard:\d{8}", "trips completed per driver per UTC day, kept 2 days"),
    (r"rf:\{\w+\}:fence", "the city's fencing-token counter: it must never go back"),
    (r"rf:\{\w+\}:events", "the city's event stream (trimmed below the recorder's position)"),
    (r"rf:\{\w+\}:requests", "the city's request stream and its dispatchers' group"),
    (r"rf:\{reqlog\}:requests", "the request-log stream (trimmed once recorded)"),
    (r"rf:\{jobs\}:finished", "the finished-jobs stream (trimmed once recorded)"),
    (r"rf:\{jobs\}:queue:\w+", "a job queue stream and its workers' group"),
    (r"rf:\{jobs\}:stats:\w+", "a task's counters (submitted, completed, ...): totals, by design"),
    (r"rf:\{jobs\}:recent:\w+", "a task's latest completions, a capped list"),
    (r"rf:\{jobs\}:status:\w+", "a job status index, purged of expired jobs every minute"),
)
"""Keys that may outlive the orders and jobs of a run (not in the baseline, since the first
order or job makes them), with why. Anything else left after retention is a leak."""

STREAM_KEPT = 2_000
"""A stream left behind may keep up to this many entries: trimming is approximate
(`MINID ~`) and works in whole macro-nodes."""


def why_left(key: str) -> str | None:
    """The reason `key` may remain once a run's orders and jobs are past retention, or None."""
    for pattern, reason in LEFT_BEHIND:
        if re.fullmatch(pattern, key):
            return reason
    return None


def rss_kib(pid: int) -> int | None:
    """The process' resident set size (VmRSS), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def name_of(pid: int) -> str:
    """`api`, `dispatcher`, `jobs`, `recorder` for `python -m rideflow <part>`; else the
    program's name (`redis-server`)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    words = [a.decode() for a in argv if a]
    if "rideflow" in words:
        return words[words.index("rideflow") + 1]
    return Path(words[0]).name.split(" ")[0]


async def keyspace(redis: Redis) -> dict[str, str]:
    """Every key and its type."""
    found: dict[str, str] = {}
    async for key in redis.scan_iter(count=1000):
        found[str(key)] = ""
    names = list(found)
    for start in range(0, len(names), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for name in names[start : start + 500]:
                pipe.type(name)
            for name, kind in zip(names[start : start + 500], await pipe.execute(), strict=True):
                found[name] = str(kind)
    return {k: t for k, t in found.items() if t != "none"}


async def pending(redis: Redis, streams: Sequence[str]) -> dict[str, int]:
    """Pending entries of every consumer group of the streams, as `stream/group` -> count."""
    out: dict[str, int] = {}
    for stream in streams:
        try:
            groups = cast(list[dict[str, object]], await redis.xinfo_groups(stream))
        except ResponseError:  # no such key (any more)
            continue
        for g in groups:
            out[f"{stream}/{g['name']}"] = int(cast(int, g["pending"]))
    return out


@dataclass
class Series:
    """Samples over time of one quantity: (seconds since the start, value)."""

    points: list[tuple[float, float]] = field(default_factory=list)

    def add(self, t: float, value: float) -> None:
        self.points.append((t, value))

    def between(self, start: float, end: float = float("inf")) -> list[float]:
        return [v for t, v in self.points if start <= t < end]


def growth(series: Series, warmup_s: float) -> float:
    """How far the quantity rose after warm-up: the highest sample after it over the level at
    its end (the mean of the first three samples after it), minus 1."""
    after = series.between(warmup_s)
    if len(after) < 4:
        raise AssertionError(f"too few samples after warm-up: {len(after)}")
    level = sum(after[:3]) / 3
    return max(after) / level - 1


def growing(series: Series, warmup_s: float, end_s: float, floor: float) -> bool:
    """Whether a count kept rising: its highest value in the last third of the window after
    warm-up exceeds both `floor` and 1.5 times its highest in the first third."""
    third = (end_s - warmup_s) / 3
    first = series.between(warmup_s, warmup_s + third)
    last = series.between(end_s - third, end_s)
    if not first or not last:
        return False
    return max(last) > max(floor, 1.5 * max(first))


class Watch:
    """Samples each process' RSS and the pending count of each consumer group of `streams`
    (every stream with a group exists before the first order: each process creates its
    groups when it starts)."""

    def __init__(self, redis: Redis, pids: dict[str, int], streams: Sequence[str]) -> None:
        self.redis, self.pids, self.streams = redis, pids, set(streams)
        self.rss = {name: Series() for name in pids}
        self.pending: dict[str, Series] = {}
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    async def sample(self) -> None:
        t = self.elapsed()
        for name, pid in self.pids.items():
            kib = rss_kib(pid)
            assert kib is not None, f"{name} (pid {pid}) is gone"
            self.rss[name].add(t, kib)
        for group, n in (await pending(self.redis, sorted(self.streams))).items():
            self.pending.setdefault(group, Series()).add(t, n)

    async def until(self, done: asyncio.Future[object], period_s: float) -> float:
        """Sample every `period_s` until `done` is; the time of the last sample."""
        tick = 0
        while not done.done():
            await self.sample()
            tick += 1
            await asyncio.sleep(max(0.0, tick * period_s - self.elapsed()))  # the period
        return self.elapsed()

    async def drained(self) -> bool:
        return all(n == 0 for n in (await pending(self.redis, sorted(self.streams))).values())


async def beyond_baseline(redis: Redis, baseline: dict[str, str]) -> dict[str, str] | None:
    """The keys beyond the baseline once every one of them is explained (`LEFT_BEHIND`); None
    while some are not."""
    extra = {k: t for k, t in (await keyspace(redis)).items() if k not in baseline}
    return None if any(why_left(k) is None for k in extra) else extra


async def unexplained(redis: Redis, baseline: dict[str, str]) -> list[str]:
    return sorted(k for k in await keyspace(redis) if k not in baseline and why_left(k) is None)
