"""The no-op task of the peer figure (`bench/jobs_peer.py`) on RideFlow's side, registered by
the job workers it starts with `RIDEFLOW_JOB_MODULES=["bench.peer_tasks"]` (as `tests.jobtasks`
is for the tests).

The first thing the handler does is read the wall clock; the stamp is written to Redis after, so
the write is not in the measured time. `bench/peer_taskiq.py` does the same on taskiq's side.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from rideflow.jobs.registry import REGISTRY, JobContext

TASK = "bench_noop"
STARTS = "bench:peer:starts"
"""Hash of the figure's key -> `time.time()` when the handler began, in its system's DB."""


class Stamp(BaseModel):
    key: str = Field(min_length=1, max_length=64)


if TASK not in REGISTRY:

    @REGISTRY.task(TASK, Stamp)
    async def bench_noop(payload: Stamp, ctx: JobContext) -> None:
        """Record when the handler began (wall clock, microseconds), nothing else."""
        started = time.time()
        await ctx.redis.hset(STARTS, payload.key, f"{started:.6f}")
