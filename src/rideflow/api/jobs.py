"""Background jobs: submit, follow, cancel, list, dead letters and re-drive, statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from rideflow.api.deps import IDEMPOTENCY_DOC, JobsDep, idempotency_key
from rideflow.api.problems import responses
from rideflow.jobs.schemas import (
    DeadLetters,
    JobCreated,
    JobList,
    JobStats,
    JobStatus,
    JobSubmit,
    JobView,
)

router = APIRouter(tags=["jobs"])
JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]


@router.post(
    "/v1/jobs",
    status_code=202,
    response_model=JobCreated,
    responses=responses(409, 422),
    summary="Submit a job: run by a worker as soon as it is due, retried with backoff on failure",
    openapi_extra=IDEMPOTENCY_DOC,
)
async def submit_job(body: JobSubmit, jobs: JobsDep, request: Request) -> JobCreated:
    return JobCreated(job_id=await jobs.submit(body, idempotency_key(request)))


@router.get(
    "/v1/jobs",
    response_model=JobList,
    responses=responses(422),
    summary="Jobs in one status, newest first, optionally of one task",
)
async def list_jobs(
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
async def job_stats(jobs: JobsDep) -> JobStats:
    return await jobs.stats()


@router.get(
    "/v1/jobs/dead",
    response_model=DeadLetters,
    responses=responses(422),
    summary="The dead letters: jobs that failed their last retry, newest first",
)
async def dead_jobs(
    jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> DeadLetters:
    return await jobs.dead(limit)


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobView,
    responses=responses(404),
    summary="A job: status, result or last error, every attempt with its times",
)
async def get_job(job_id: JobId, jobs: JobsDep) -> JobView:
    return await jobs.get(job_id)


@router.post(
    "/v1/jobs/{job_id}/cancel",
    response_model=JobView,
    responses=responses(404, 409),
    summary="Cancel a pending job (a running or finished one: 409)",
)
async def cancel_job(job_id: JobId, jobs: JobsDep) -> JobView:
    return await jobs.cancel(job_id)


@router.post(
    "/v1/jobs/{job_id}/redrive",
    response_model=JobView,
    responses=responses(404, 409),
    summary="Send a failed job back to its queue with its retries reset",
)
async def redrive_job(job_id: JobId, jobs: JobsDep) -> JobView:
    return await jobs.redrive(job_id)
