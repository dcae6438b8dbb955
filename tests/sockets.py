"""WebSocket clients for tests (the `websockets` library) and the app served by a real uvicorn
in the test's own event loop, so in-process dispatchers run beside it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from rideflow.api.app import create_app
from rideflow.api.serving import server_options
from rideflow.auth.principal import Role
from rideflow.config import Settings
from tests.auth import access_token, bearer

WAIT_S = 15.0
"""Most a test waits for one message it expects (a failure, never a pace)."""


@contextlib.asynccontextmanager
async def served(settings: Settings, *, send_buffer: int | None = None) -> AsyncIterator[str]:
    """The app under uvicorn on a free loopback port, in this event loop; its base URL.
    `send_buffer` fixes the kernel send buffer of every accepted connection (inherited from the
    listening socket): on loopback it otherwise grows to megabytes, which a slow-consumer test
    would have to fill before the server's own queue sees any backpressure."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    listener.bind(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    config = uvicorn.Config(create_app(settings), lifespan="on", **server_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn exited before it started"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        listener.close()


def admin_client(settings: Settings, base_url: str) -> httpx.AsyncClient:
    """An HTTP client to `base_url` acting as an ADMIN (who may act for anyone)."""
    return httpx.AsyncClient(
        base_url=base_url, headers=bearer(settings, "admin-1", Role.ADMIN), timeout=30
    )


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/v1/ws"


class Socket:
    """A client socket: requests with ids (their reply awaited), everything else in order."""

    def __init__(self, conn: ClientConnection, token: str = "") -> None:
        self.conn, self.token = conn, token
        self.inbox: deque[dict[str, Any]] = deque()
        self.ids = itertools.count(1)

    async def _read(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            message: dict[str, Any] = orjson.loads(await self.conn.recv())
        return message

    async def next(self, *types: str) -> dict[str, Any]:
        """The next message of one of `types` (any when none is named); messages of other types
        stay in the inbox, in order. Pings are dropped."""
        for i, message in enumerate(self.inbox):
            if not types or message["type"] in types:
                del self.inbox[i]
                return message
        while True:
            message = await self._read()
            if message["type"] == "ping":
                continue
            if not types or message["type"] in types:
                return message
            self.inbox.append(message)

    async def request(self, kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a message with a fresh id; its reply (`ack` or `error`). Other messages read
        meanwhile stay in the inbox, in order."""
        mid = f"r{next(self.ids)}"
        await self.send(kind, data or {}, mid)
        held: list[dict[str, Any]] = []
        try:
            while True:
                message = await self._read()
                if message["type"] in ("ack", "error") and message["id"] == mid:
                    return message
                held.append(message)
        finally:
            self.inbox.extend(held)

    async def send(self, kind: str, data: dict[str, Any], mid: str | int | None = None) -> None:
        await self.conn.send(orjson.dumps({"type": kind, "id": mid, "data": data}).decode())

    async def close(self) -> None:
        await self.conn.close()


@contextlib.asynccontextmanager
async def opened(
    settings: Settings,
    base_url: str,
    subject: str,
    role: Role,
    *,
    via_query: bool = False,
    small_buffer: bool = False,
    **kw: Any,
) -> AsyncIterator[Socket]:
    """A socket as `subject` with `role`, its `hello` read."""
    token = access_token(settings, subject, role)
    url = ws_url(base_url)
    options: dict[str, Any] = {"open_timeout": WAIT_S, **kw}
    if via_query:
        url += f"?access_token={token}"
    else:
        options["subprotocols"] = ["rideflow.v1", f"bearer.{token}"]
    if small_buffer:
        # A client that stops reading: a small receive buffer fills fast and the server's sends
        # back up into its own queue.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(base_url.rsplit(":", 1)[1])))
        options["sock"] = sock
    async with connect(url, **options) as conn:
        s = Socket(conn, token)
        hello = await s.next()
        assert hello["type"] == "hello", hello
        assert hello["data"]["subject"] == subject
        yield s
