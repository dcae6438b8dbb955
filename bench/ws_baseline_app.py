"""The bare WebSocket endpoint figure 16 compares with: Starlette on the same uvicorn, accepting,
sending one message and reading until the client leaves. What a socket costs before RideFlow."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket


async def endpoint(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text('{"type": "hello", "id": null, "data": {}}')
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


app = Starlette(routes=[WebSocketRoute("/v1/ws", endpoint)])
