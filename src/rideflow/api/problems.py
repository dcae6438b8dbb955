"""Errors as clients see them: every error of the app rendered as RFC 9457
`application/problem+json`, and documented in the OpenAPI document exactly as sent."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from rideflow.errors import RideflowError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    text = {
        404: "Unknown id",
        409: "Conflicts with the current state",
        413: "Body too large",
        422: "Invalid input, with the field and the reason",
        429: "Rate limited",
        503: "Redis unreachable",
    }
    return {
        s: {"model": Problem, "description": text[s], "content": {"application/problem+json": {}}}
        for s in (*statuses, 429, 503)
    }


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """An `application/problem+json` response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation(request: Request, exc: Exception) -> Response:
    """FastAPI's request validation, or a model a route builds from request data itself (the
    raw ride body, a path value): either way 422 naming each field."""
    assert isinstance(exc, RequestValidationError | ValidationError)
    errors = [{"field": _field(tuple(e["loc"])), "reason": e["msg"]} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
    return problem(422, "Invalid request", detail, errors=errors)


def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        500, "Internal server error", "the server failed to handle this request; it has been logged"
    )


def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RideflowError)
    return problem(exc.status, exc.title, exc.detail, **exc.extra)


def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, title, str(exc.detail), headers=headers)


def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable: %s", exc)
    return redis_unavailable(exc)


def redis_unavailable(exc: Exception) -> Response:
    """The 503 every request gets while Redis cannot be reached."""
    return problem(
        503,
        "Service unavailable",
        f"Redis is unreachable or refusing work ({type(exc).__name__}: {exc}); retry shortly",
        headers={"Retry-After": "1"},
    )


def install(app: FastAPI) -> None:
    """Render every error of the app as problem+json."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(RideflowError, _domain)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ValidationError, _validation)
    # Connection loss, timeouts, and a Redis refusing writes (OOM, MISCONF, READONLY) alike.
    app.add_exception_handler(RedisError, _redis_down)
    app.add_exception_handler(Exception, _unexpected)
