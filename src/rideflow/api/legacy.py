"""The original services' endpoints, kept working exactly as they were used: the ride queue
service's `POST /request-ride` and the job service's `POST /submit-job` and
`GET /job-status/{id}`. Their bodies are defined here, beside the routes that keep them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from rideflow.api.deps import IDEMPOTENCY_DOC, JobsDep, OrdersDep, idempotency_key
from rideflow.api.jobs import JobId, check_job, check_task
from rideflow.api.ownership import customer_for
from rideflow.api.problems import responses
from rideflow.api.security import AnyCaller, CustomerCaller
from rideflow.jobs.schemas import TASK_PATTERN, JobStatus, JobSubmit
from rideflow.orders.schemas import RideCreate
from rideflow.orders.states import OrderStatus
from rideflow.schemas import Body, Id, Lat, Lng, Point


class LegacyRideRequest(Body):
    """The body of `POST /request-ride` exactly as the original ride queue service takes it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rider_id": 1,
                    "pickup_lat": 12.97,
                    "pickup_lng": 77.59,
                    "dest_lat": 13.01,
                    "dest_lng": 77.60,
                }
            ]
        },
    )

    rider_id: int | Id | None = Field(
        default=None, description="The rider: a CUSTOMER's own id, or left out; ADMIN names one"
    )
    pickup_lat: Lat
    pickup_lng: Lng
    dest_lat: Lat
    dest_lng: Lng


class LegacyRideQueued(BaseModel):
    message: str = "Ride queued successfully"
    ride_id: str
    status: OrderStatus = "QUEUED"


class LegacyJobSubmit(Body):
    """`POST /submit-job` exactly as the original job service takes it."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"task": "send_email"}]}
    )

    task: str = Field(pattern=TASK_PATTERN)


class LegacyJobCreated(BaseModel):
    job_id: str


class LegacyJobStatus(BaseModel):
    job_id: str
    task: str
    status: JobStatus
    retries: int


router = APIRouter(tags=["compatibility"])


@router.post(
    "/request-ride",
    status_code=202,
    response_model=LegacyRideQueued,
    responses=responses(409, 422),
    summary="Request a ride with the original flat body (same as POST /v1/rides)",
    openapi_extra=IDEMPOTENCY_DOC,
)
async def request_ride(
    body: LegacyRideRequest, caller: CustomerCaller, orders: OrdersDep, request: Request
) -> LegacyRideQueued:
    named = None if body.rider_id is None else str(body.rider_id)
    ride = RideCreate(
        rider_id=customer_for(caller, named, "rider_id"),
        pickup=Point(lat=body.pickup_lat, lng=body.pickup_lng),
        dropoff=Point(lat=body.dest_lat, lng=body.dest_lng),
    )
    ride_id, _city = await orders.create_ride(ride, idempotency_key(request))
    return LegacyRideQueued(ride_id=ride_id)


@router.post(
    "/submit-job",
    status_code=202,
    response_model=LegacyJobCreated,
    responses=responses(422),
    tags=["compatibility"],
    summary="Submit a job with the original body (same as POST /v1/jobs with defaults)",
)
async def legacy_submit_job(
    body: LegacyJobSubmit, caller: AnyCaller, jobs: JobsDep
) -> LegacyJobCreated:
    check_task(caller, body.task)
    job_id = await jobs.submit(JobSubmit(task=body.task), submitter=caller.subject)
    return LegacyJobCreated(job_id=job_id)


@router.get(
    "/job-status/{job_id}",
    response_model=LegacyJobStatus,
    responses=responses(404),
    tags=["compatibility"],
    summary="A job's status and retries, as the original job service shows them",
)
async def legacy_job_status(job_id: JobId, caller: AnyCaller, jobs: JobsDep) -> LegacyJobStatus:
    await check_job(caller, jobs, job_id)
    return LegacyJobStatus.model_validate(await jobs.brief(job_id))
