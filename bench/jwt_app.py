"""Two tiny routes on one app for figure 16, identical but for the caller check: `GET /open`
takes no caller, `GET /auth` takes RideFlow's own `AnyCaller` (the bearer token verified by
`AccessTokens.verify`, through FastAPI's security dependencies, as every guarded route does).

Served by uvicorn with `--factory` (`bench.jwt_app:create_app`), settings from the environment
the benchmark gives RideFlow's processes (`RIDEFLOW_JWT_SECRET` among them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI, Response

from rideflow.api import problems
from rideflow.api.security import AnyCaller
from rideflow.auth.secret import jwt_secret
from rideflow.auth.tokens import AccessTokens
from rideflow.config import Settings

BODY = b'{"ok":true}'


class State(TypedDict):
    tokens: AccessTokens


def create_app() -> FastAPI:
    """The app; the token verifier is made in the lifespan, as RideFlow's is."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        settings = Settings()
        yield State(tokens=AccessTokens(settings, jwt_secret(settings)))

    app = FastAPI(title="rideflow-jwt-bench", lifespan=lifespan, openapi_url=None)
    problems.install(app)  # a refused token is RideFlow's 401

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/open")
    async def unchecked() -> Response:
        return Response(BODY, media_type="application/json")

    @app.get("/auth")
    async def checked(caller: AnyCaller) -> Response:
        return Response(BODY, media_type="application/json")

    return app
