"""`GET /metrics`: Prometheus' scrape, for ADMIN only (an access token, or an ADMIN back end's
API key, which a scraper sends as `Authorization: Bearer <key>`)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from rideflow.api.security import AdminCaller
from rideflow.metrics.exposition import CONTENT_TYPE, render

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: of every process of `rideflow up`, or of this one alone",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text format (version 0.0.4)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(caller: AdminCaller) -> Response:
    # Rendered on the loop: a few milliseconds of CPU per scrape (bench figure `metrics`), which
    # a thread would not make cheaper under the GIL.
    return Response(render(), media_type=CONTENT_TYPE)
