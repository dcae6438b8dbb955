"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from rideflow.api.deps import RedisDep
from rideflow.api.problems import problem

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Redis is reachable",
    responses={503: {"description": "Redis is unreachable"}},
)
async def readyz(redis: RedisDep) -> Health | Response:
    try:
        await redis.ping()
    except Exception as exc:  # any failure to reach Redis means not ready
        return problem(
            503, "Not ready", f"Redis is unreachable: {exc}", headers={"Retry-After": "1"}
        )
    return Health(status="ready")
