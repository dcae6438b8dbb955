"""An account of the simulation as the API sees it: registered, logged in, its access token
kept fresh with the refresh token, its HTTP calls and its WebSocket. Only public routes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

REFRESH_BEFORE_S = 60.0
"""An access token this close to expiring is swapped for a new one before the next call."""
MAX_LOGIN_WAIT_S = 120.0


class ApiError(Exception):
    """A refusal from the API: its status and the problem's detail."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path}: {status} {detail}")
        self.status, self.detail = status, detail


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]


class Account:
    """One person's account: `await register(...)`, `await log_in()`, then `call` and `socket`."""

    def __init__(self, http: httpx.AsyncClient, email: str, password: str) -> None:
        self.http, self.email, self.password = http, email, password
        self.id = ""
        self.token = ""
        self.refresh_token = ""
        self.expires_at = 0.0
        self.waited_s = 0.0
        """Time spent waiting out login rate limits (429)."""

    async def register(self, body: dict[str, Any]) -> None:
        """Create the account (an existing one, 409, is logged into as it is)."""
        r = await self.http.post(
            "/v1/auth/register", json={"email": self.email, "password": self.password, **body}
        )
        if r.status_code not in (201, 409):
            raise ApiError("POST", "/v1/auth/register", r.status_code, _detail(r))

    async def log_in(self) -> None:
        """Log in; a 429 (the per-address login limit) is waited out, up to a bound."""
        form = {"username": self.email, "password": self.password}
        while True:
            r = await self.http.post("/v1/auth/token", data=form)
            if r.status_code != 429 or self.waited_s >= MAX_LOGIN_WAIT_S:
                break
            wait = min(float(r.headers.get("retry-after", "1")), 10.0)
            self.waited_s += wait
            await asyncio.sleep(wait)
        if r.status_code != 200:
            raise ApiError("POST", "/v1/auth/token", r.status_code, _detail(r))
        self._took(r.json())
        me = await self.call("GET", "/v1/me")
        self.id = me["id"]

    def _took(self, pair: dict[str, Any]) -> None:
        self.token, self.refresh_token = pair["access_token"], pair["refresh_token"]
        self.expires_at = time.monotonic() + float(pair["expires_in"])

    async def _fresh(self) -> None:
        if self.expires_at - time.monotonic() > REFRESH_BEFORE_S:
            return
        r = await self.http.post("/v1/auth/refresh", json={"refresh_token": self.refresh_token})
        if r.status_code != 200:
            raise ApiError("POST", "/v1/auth/refresh", r.status_code, _detail(r))
        self._took(r.json())

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Any:
        """One authenticated call; its JSON answer, or `ApiError`."""
        await self._fresh()
        headers = {"Authorization": f"Bearer {self.token}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        content = orjson.dumps(body) if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        r = await self.http.request(method, path, content=content, headers=headers)
        if r.status_code >= 400:
            raise ApiError(method, path, r.status_code, _detail(r))
        return r.json() if r.content else None

    def socket(self) -> connect:
        """The WebSocket gateway, the access token offered as a subprotocol."""
        base = str(self.http.base_url).rstrip("/")
        url = "ws" + base.removeprefix("http") + "/v1/ws"
        return connect(
            url,
            subprotocols=["rideflow.v1", f"bearer.{self.token}"],  # type: ignore[list-item]
            open_timeout=20,
            ping_interval=None,  # the gateway pings; the agents answer
            max_queue=1024,
        )


async def send(
    ws: ClientConnection, kind: str, data: dict[str, Any], mid: str | None = None
) -> None:
    await ws.send(orjson.dumps({"type": kind, "id": mid, "data": data}).decode())
