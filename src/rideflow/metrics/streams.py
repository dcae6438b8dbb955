"""Stream lengths, and entries pending and unread per consumer group, sampled every
`metrics_sample_s` by a background task of the recorder (the process that reads every city's
stream already): one pipelined round trip per sample, never on a request's path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.metrics.families import STREAM_LAG, STREAM_LENGTH, STREAM_PENDING
from rideflow.redis import keys


@dataclass(frozen=True, slots=True)
class Watched:
    """A stream, by the name its metrics carry (never its Redis key) and its city ('' for the
    streams every city shares)."""

    key: str
    stream: str
    city: str = ""


def watched_streams(settings: Settings) -> list[Watched]:
    """Each city's request stream, event stream and dead requests; the job queues, dead jobs
    and finished jobs; the request log."""
    out: list[Watched] = []
    for city in settings.cities:
        code = city.code
        out.append(Watched(keys.requests(code), "requests", code))
        out.append(Watched(keys.city_events(code), "city_events", code))
        out.append(Watched(keys.dead_requests(code), "dead_requests", code))
    for priority, queue in zip(keys.PRIORITIES, keys.job_queues(), strict=True):
        out.append(Watched(queue, f"jobs_{priority}"))
    out.append(Watched(keys.jobs_dead(), "jobs_dead"))
    out.append(Watched(keys.jobs_finished(), "jobs_finished"))
    out.append(Watched(keys.request_log(), "request_log"))
    return out


async def sample(redis: Redis, watched: list[Watched]) -> int:
    """Set the gauges from one pipelined `XLEN` + `XINFO GROUPS` per stream; how many streams
    exist. A stream that does not exist (yet) is 0 long and has no groups."""
    async with redis.pipeline(transaction=False) as pipe:
        for w in watched:
            pipe.xlen(w.key)
            pipe.xinfo_groups(w.key)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    present = 0
    for i, w in enumerate(watched):
        length, groups = replies[2 * i], replies[2 * i + 1]
        if isinstance(length, Exception):
            raise length
        STREAM_LENGTH.labels(w.stream, w.city).set(int(length))
        if isinstance(groups, Exception):  # no such key
            continue
        present += 1
        for group in groups:
            STREAM_PENDING.labels(w.stream, w.city, group["name"]).set(int(group["pending"]))
            if group.get("lag") is not None:  # Redis cannot always tell (after deletions)
                STREAM_LAG.labels(w.stream, w.city, group["name"]).set(int(group["lag"]))
    return present


async def sample_streams(redis: Redis, settings: Settings, live: Callable[[], bool]) -> None:
    """Sample while `live()`; a Redis error ends the loop for its runner to restart it."""
    watched = watched_streams(settings)
    while live():
        await sample(redis, watched)
        await asyncio.sleep(settings.metrics_sample_s)
