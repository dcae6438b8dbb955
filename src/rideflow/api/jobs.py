"""Background jobs: submit, follow, cancel, list, dead letters and re-drive, statistics.

Any authenticated caller submits; a job (its payload and result) is visible to its submitter
and ADMIN only, another's is 404. Listing, statistics, dead letters and re-drive are ADMIN's.
Tasks that change others' data (`update_driver_rating`) are submitted by RideFlow itself, ADMIN
or a back end, never by an account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from rideflow.api.deps import IDEMPOTENCY_DOC, JobsDep, idempotency_key
from rideflow.api.ownership import sees_all
from rideflow.api.problems import responses
from rideflow.api.security import AdminCaller, AnyCaller
from rideflow.auth.principal import Principal
from rideflow.errors import Forbidden, NotFound
from rideflow.jobs.schemas import (
    DeadLetters,
    JobCreated,
    JobList,
    JobStats,
    JobStatus,
    JobSubmit,
    JobView,
)
from rideflow.jobs.store import Jobs

router = APIRouter(tags=["jobs"])
JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
SYSTEM_TASKS = frozenset({"update_driver_rating"})
"""Tasks only RideFlow itself, ADMIN or a back end may submit: they change others' data."""


def check_task(caller: Principal, task: str) -> None:
    """403 for an account submitting a system task."""
    if task in SYSTEM_TASKS and not sees_all(caller):
        raise Forbidden(f"task {task!r} is submitted by the system or ADMIN only")


async def check_job(caller: Principal, jobs: Jobs, job_id: str) -> None:
    """404, worded as for an unknown id, unless the caller submitted the job or is ADMIN."""
    if caller.admin:
        return
    if await jobs.submitter(job_id) != caller.subject:
        raise NotFound(f"no job with id {job_id!r}")


@router.post(
    "/v1/jobs",
    status_code=202,
    response_model=JobCreated,
    responses=responses(409, 422),
    summary="Submit a job: run by a worker as soon as it is due, retried with backoff on failure",
    openapi_extra=IDEMPOTENCY_DOC,
)
async def submit_job(
    body: JobSubmit, caller: AnyCaller, jobs: JobsDep, request: Request
) -> JobCreated:
    check_task(caller, body.task)
    job_id = await jobs.submit(body, idempotency_key(request), submitter=caller.subject)
    return JobCreated(job_id=job_id)


@router.get(
    "/v1/jobs",
    response_model=JobList,
    responses=responses(422),
    summary="Jobs in one status, newest first, optionally of one task",
)
async def list_jobs(
    caller: AdminCaller,
    jobs: JobsDep,
    status: JobStatus,
    task: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        float | None,
        Query(allow_inf_nan=False, description="`next_before` of the previous page"),
    ] = None,
) -> JobList:
    return await jobs.list(status, task, limit, before)


@router.get(
    "/v1/jobs/stats",
    response_model=JobStats,
    summary="Counts per status; per task: totals, throughput, run time and wait percentiles",
)
async def job_stats(caller: AdminCaller, jobs: JobsDep) -> JobStats:
    return await jobs.stats()


@router.get(
    "/v1/jobs/dead",
    response_model=DeadLetters,
    responses=responses(422),
    summary="The dead letters: jobs that failed their last retry, newest first",
)
async def dead_jobs(
    caller: AdminCaller, jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> DeadLetters:
    return await jobs.dead(limit)


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobView,
    responses=responses(404),
    summary="A job: status, result or last error, every attempt with its times",
    description="Its submitter's, or ADMIN's; another's is 404.",
)
async def get_job(job_id: JobId, caller: AnyCaller, jobs: JobsDep) -> JobView:
    job = await jobs.get(job_id)
    if not caller.admin and job.submitted_by != caller.subject:
        raise NotFound(f"no job with id {job_id!r}")
    return job


@router.post(
    "/v1/jobs/{job_id}/cancel",
    response_model=JobView,
    responses=responses(404, 409),
    summary="Cancel a pending job (a running or finished one: 409)",
)
async def cancel_job(job_id: JobId, caller: AnyCaller, jobs: JobsDep) -> JobView:
    await check_job(caller, jobs, job_id)
    return await jobs.cancel(job_id)


@router.post(
    "/v1/jobs/{job_id}/redrive",
    response_model=JobView,
    responses=responses(404, 409),
    summary="Send a failed job back to its queue with its retries reset",
)
async def redrive_job(job_id: JobId, caller: AdminCaller, jobs: JobsDep) -> JobView:
    return await jobs.redrive(job_id)
