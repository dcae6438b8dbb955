"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from rideflow.api.deps import RedisDep
from rideflow.api.problems import problem
from rideflow.config import Settings
from rideflow.record.backlog import backlog, recorder_streams

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(Health):
    recorder_backlog: int | None = Field(
        default=None,
        description="Entries not yet recorded in SQL (None: the record is off). The API serves "
        "all the same: a backlog costs the record lag, never data.",
    )
    warnings: list[str] = Field(default_factory=list)


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Redis is reachable (and how far behind the recorder is)",
    responses={503: {"description": "Redis is unreachable"}},
)
async def readyz(redis: RedisDep, request: Request) -> Readiness | Response:
    settings: Settings = request.state.settings
    try:
        await redis.ping()
        behind = (
            await backlog(redis, recorder_streams(settings)) if settings.record_enabled else None
        )
    except Exception as exc:  # any failure to reach Redis means not ready
        return problem(
            503, "Not ready", f"Redis is unreachable: {exc}", headers={"Retry-After": "1"}
        )
    warnings = []
    if behind is not None and behind > settings.recorder_backlog_warn:
        warnings.append(
            f"the recorder is {behind} entries behind (warning past "
            f"{settings.recorder_backlog_warn}): is it running, and is SQL reachable?"
        )
    return Readiness(status="ready", recorder_backlog=behind, warnings=warnings)
