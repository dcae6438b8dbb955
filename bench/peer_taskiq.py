"""The taskiq side of the peer figure (`bench/jobs_peer.py`): a `RedisStreamBroker` and the same
no-op task as `bench/peer_tasks.py`. Workers run `taskiq worker bench.peer_taskiq:broker` with
`BENCH_TASKIQ_REDIS_URL` naming their Redis (its own DB); the benchmark makes its own broker with
`make_broker` to submit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis
from taskiq import AsyncTaskiqDecoratedTask
from taskiq_redis import RedisStreamBroker

URL_ENV = "BENCH_TASKIQ_REDIS_URL"
QUEUE = "bench:peer:taskiq"
TASK = "bench_noop"
STARTS = "bench:peer:starts"
"""Hash of the figure's key -> `time.time()` when the task began, in taskiq's DB."""

_stamps: list[Redis] = []


def stamps(url: str) -> Redis:
    """The client the task writes its stamps with, made once per process."""
    if not _stamps:
        _stamps.append(Redis.from_url(url))
    return _stamps[0]


NoopTask = AsyncTaskiqDecoratedTask[[str], Coroutine[Any, Any, None]]


def make_broker(url: str) -> tuple[RedisStreamBroker, NoopTask]:
    """A stream broker on `url` (defaults otherwise) and the no-op task registered on it."""
    broker = RedisStreamBroker(url, queue_name=QUEUE)

    async def bench_noop(key: str) -> None:
        """Record when the task began (wall clock, microseconds), nothing else."""
        started = time.time()
        await stamps(url).hset(STARTS, key, f"{started:.6f}")

    return broker, broker.task(task_name=TASK)(bench_noop)


# What `taskiq worker bench.peer_taskiq:broker` loads. Building a broker connects to nothing, so
# importing this module without the variable set (as the benchmark does) is harmless.
broker, noop = make_broker(os.environ.get(URL_ENV, "redis://127.0.0.1:1/1"))
