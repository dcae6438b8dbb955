"""Errors as clients see them: every error of the app rendered as RFC 9457
`application/problem+json`, and documented in the OpenAPI document exactly as sent."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from rideflow.api.security import API_KEY_SCHEME
from rideflow.errors import RideflowError
from rideflow.metrics.families import redis_error, sql_error
from rideflow.record.db import database_outage

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
UNLIMITED_PREFIXES = ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json")
"""Paths no rate limit guards: probes and documentation."""
# Error replies of a Redis that is up but refusing work for now (loading its data set, a replica,
# out of memory, failing to persist, a script running past its time): worth a retry. The
# pipelined client raises a plain ResponseError for them, so they are known by their prefix.
REFUSING_WORK = ("LOADING", "READONLY", "OOM", "MISCONF", "MASTERDOWN", "BUSY", "TRYAGAIN")
log = logging.getLogger(__name__)


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
RATE_HEADERS = {
    "RateLimit-Policy": {"description": "The policy applied", "schema": {"type": "string"}},
    "RateLimit": {"description": "What is left of it", "schema": {"type": "string"}},
}
DOCS: dict[int, dict[str, Any]] = {
    401: {"description": "No valid credentials (a bearer access token or an API key)"},
    403: {"description": "Valid credentials of a role that may not do this"},
    404: {"description": "Unknown id"},
    409: {"description": "Conflicts with the current state"},
    413: {"description": "Body too large"},
    415: {"description": "A body that is not `application/json`"},
    422: {"description": "Invalid input (malformed JSON included), with the field and the reason"},
    429: {"description": "Rate limited", "headers": {"Retry-After": RETRY_AFTER, **RATE_HEADERS}},
    503: {
        "description": "Redis unreachable, loading or refusing work",
        "headers": {"Retry-After": RETRY_AFTER},
    },
}


def _doc(status: int) -> dict[str, Any]:
    return {**DOCS[status], "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the domain error statuses a route can answer (404, 409, 422); the
    edge's own (413, 429, 503) are added to every route by `install`."""
    return {s: _doc(s) for s in statuses}


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


def _unreadable_body(cause: BaseException) -> Response:
    if isinstance(cause, UnicodeError):
        reason = "the body is not UTF-8; JSON must be"
    elif isinstance(cause, RecursionError):
        reason = "the JSON nests too deeply"
    else:
        reason = "the body is not valid JSON"
    return problem(
        422, "Invalid request", f"body: {reason}", errors=[{"field": "body", "reason": reason}]
    )


def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        500, "Internal server error", "the server failed to handle this request; it has been logged"
    )


def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RideflowError)
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="rideflow"'
    if "retry_after" in exc.extra:
        headers["Retry-After"] = str(exc.extra["retry_after"])
    return problem(exc.status, exc.title, exc.detail, headers=headers or None, **exc.extra)


def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI's answer to a body it could not decode: the same problem as malformed JSON,
        # which is a 422 on every route (and on the routes that parse their own body).
        return _unreadable_body(exc.__cause__)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, title, str(exc.detail), headers=headers)


def redis_outage(exc: RedisError) -> bool:
    """Whether an error means Redis cannot serve now (a retry may succeed), rather than a
    command this server got wrong (a retry never will)."""
    if isinstance(exc, ConnectionError | TimeoutError | BusyLoadingError):
        return True
    if isinstance(exc, ReadOnlyError | OutOfMemoryError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(REFUSING_WORK)


def _redis_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RedisError)
    return redis_failure(exc, f"{request.method} {request.url.path}")


def redis_failure(exc: RedisError, where: str) -> Response:
    """503 with `Retry-After` while Redis is down or refusing work; any other Redis error is a
    command this server got wrong: a 500, which no retry would cure."""
    redis_error(exc)
    if not redis_outage(exc):
        log.error("redis refused a command on %s", where, exc_info=exc)
        return problem(
            500,
            "Internal server error",
            "the server failed to handle this request; it has been logged",
        )
    log.warning("redis unavailable: %s", exc)
    return problem(
        503,
        "Service unavailable",
        # The exception's text can quote a command and its keys: logged above, never sent.
        f"Redis is unreachable or refusing work ({type(exc).__name__}); retry shortly",
        headers={"Retry-After": "1"},
    )


def _connection_error(request: Request, exc: Exception) -> Response:
    """A raw `OSError` reaching the app: a connection the record's driver failed to open
    (asyncpg raises a refused or timed-out connect unwrapped, not as a SQLAlchemy error; Redis
    errors always come wrapped as `RedisError`). 503, like any other database outage."""
    return _database_error(request, exc)


def _database_error(request: Request, exc: Exception) -> Response:
    """503 while the record's database cannot serve (a retry may succeed); other SQL errors are
    this server's fault: 500."""
    where = f"{request.method} {request.url.path}"
    sql_error(exc)
    if not database_outage(exc):
        log.error("the database refused a statement on %s", where, exc_info=exc)
        return problem(
            500,
            "Internal server error",
            "the server failed to handle this request; it has been logged",
        )
    log.warning("database unavailable on %s: %s", where, exc)
    return problem(
        503,
        "Service unavailable",
        f"the database is unreachable ({type(exc).__name__}); retry shortly",
        headers={"Retry-After": "2"},
    )


def install(app: FastAPI) -> None:
    """Render every error of the app as problem+json."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(RideflowError, _domain)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ValidationError, _validation)
    app.add_exception_handler(RedisError, _redis_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(OSError, _connection_error)
    app.add_exception_handler(Exception, _unexpected)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document with every error as sent: problem+json, including FastAPI's own
    422 and the statuses the edge adds to every route."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Problem"] = Problem.model_json_schema()
        schemes = doc["components"].setdefault("securitySchemes", {})
        schemes["ApiKey"] = API_KEY_SCHEME
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                answers = operation.setdefault("responses", {})
                edge = [413] if path.startswith("/healthz") else [413, 503]
                if not path.startswith(UNLIMITED_PREFIXES):
                    edge.append(429)
                if "422" in answers:  # FastAPI's own, for routes with parameters
                    edge.append(422)
                if method.upper() in ("POST", "PUT", "PATCH", "DELETE") and not _form(operation):
                    edge.append(415)  # a body that is not JSON (JsonBodyMiddleware)
                if operation.get("security"):  # a route that takes a caller: token or API key
                    edge += [401, 403]
                    operation["security"].append({"ApiKey": []})
                for status in edge:
                    answers[str(status)] = _doc(status)
        app.openapi_schema = doc
    return app.openapi_schema


def _form(operation: dict[str, Any]) -> bool:
    """Whether an operation takes a form (the OAuth2 token route) rather than JSON."""
    content = operation.get("requestBody", {}).get("content", {})
    return "application/x-www-form-urlencoded" in content or "multipart/form-data" in content
