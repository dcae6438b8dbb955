"""What both example clients share: JSON over HTTP with the standard library, logging in (after
registering, the first time), and opening the WebSocket with the access token."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import websockets


class Api:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.token = ""

    def call(self, method: str, path: str, body: Any = None, *, form: bool = False) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None and form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:  # every error is application/problem+json
            problem = json.loads(exc.read() or b"{}")
            raise SystemExit(f"{method} {path}: {exc.code} {problem.get('detail', '')}") from None
        return json.loads(text) if text else None

    def log_in(self, email: str, password: str, register: dict[str, Any]) -> dict[str, Any]:
        """Log in, registering the account first if it does not exist yet; the account."""
        try:
            self.call(
                "POST", "/v1/auth/register", {"email": email, "password": password, **register}
            )
        except SystemExit as exc:
            if ": 409 " not in str(exc):  # 409: registered already
                raise
        pair = self.call(
            "POST", "/v1/auth/token", {"username": email, "password": password}, form=True
        )
        self.token = pair["access_token"]
        account: dict[str, Any] = self.call("GET", "/v1/me")
        return account

    def socket(self) -> Any:
        """The WebSocket gateway, authenticated at the handshake (the token as a subprotocol)."""
        url = "ws" + self.base.removeprefix("http") + "/v1/ws"
        return websockets.connect(url, subprotocols=["rideflow.v1", f"bearer.{self.token}"])


async def send(ws: Any, kind: str, data: dict[str, Any], mid: str | None = None) -> None:
    await ws.send(json.dumps({"type": kind, "id": mid, "data": data}))
