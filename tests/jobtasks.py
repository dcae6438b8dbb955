"""Tasks the job tests register (`RIDEFLOW_JOB_MODULES=["tests.jobtasks"]`): each counts its runs
and applies its effect once per job id, as every task must."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from rideflow.jobs.registry import REGISTRY, JobContext

EFFECTS = "test:{effects}"
"""Counter of effects applied; with the markers under one hash tag (a script's keys share a
slot on Redis Cluster)."""
APPLY_ONCE = """
if redis.call('SET', KEYS[1], 1, 'NX') then return redis.call('INCR', KEYS[2]) end
return 0
"""


def runs_key(job_id: str) -> str:
    return f"test:runs:{job_id}"


class Work(BaseModel):
    seconds: float = Field(default=0, ge=0, le=60)
    fail_times: int = Field(default=0, ge=0)


if "test_work" not in REGISTRY:

    @REGISTRY.task("test_work", Work)
    async def test_work(payload: Work, ctx: JobContext) -> dict[str, float]:
        """Count the run, sleep, fail the first `fail_times` attempts, apply the effect once."""
        await ctx.redis.incr(runs_key(ctx.job_id))
        if payload.seconds:
            await asyncio.sleep(payload.seconds)
        if ctx.attempt <= payload.fail_times:
            raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
        # The effect and its once-per-job marker in one atomic step: a kill between the two
        # would otherwise leave the marker without the effect.
        await ctx.redis.eval(APPLY_ONCE, 2, f"test:{{effects}}:effect:{ctx.job_id}", EFFECTS)
        return {"slept": payload.seconds}
