"""`/v1/ws`: the WebSocket gateway, authenticated at the handshake.

The access token comes in the `Sec-WebSocket-Protocol` header (the client offers `rideflow.v1`
and `bearer.<access token>`; the server selects `rideflow.v1`) or as `?access_token=`. Without a
valid one the upgrade is refused with a 401 problem, before any socket exists. The protocol
(message types, close codes, resume) is in `rideflow.realtime.protocol` and the README.

The app serves a socket straight from the server (`SOCKETS`, `RideflowApp`), not through the
HTTP middleware and router: each layer is a coroutine kept alive as long as its socket, and a
process holds tens of thousands of sockets (figure 17: memory per socket, and the garbage
collector walks every one of those objects)."""

from __future__ import annotations

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from rideflow.auth.principal import Principal
from rideflow.auth.tokens import AccessTokens
from rideflow.errors import Unauthorized
from rideflow.realtime.gateway import Gateway
from rideflow.realtime.protocol import BEARER_PREFIX, SUBPROTOCOL, Close

PATH = "/v1/ws"
DENIAL = "websocket.http.response"
PROBLEM_JSON = "application/problem+json"


def _token(ws: WebSocket) -> str | None:
    for offered in ws.scope.get("subprotocols", []):
        if offered.startswith(BEARER_PREFIX):
            return str(offered[len(BEARER_PREFIX) :])
    return ws.query_params.get("access_token")


def _principal(ws: WebSocket) -> Principal:
    token = _token(ws)
    if not token:
        raise Unauthorized(
            "a socket needs an access token: offer the subprotocols `rideflow.v1` and "
            "`bearer.<access token>`, or pass `?access_token=`"
        )
    tokens: AccessTokens = ws.state.tokens
    return tokens.verify(token)


async def serve_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app of `/v1/ws`."""
    await websocket(WebSocket(scope, receive, send))


SOCKETS: dict[str, ASGIApp] = {PATH: serve_socket}
"""WebSocket paths -> their apps, served ahead of the HTTP stack."""


async def websocket(ws: WebSocket) -> None:
    try:
        principal = _principal(ws)
    except Unauthorized as exc:
        if DENIAL in ws.scope.get("extensions", {}):
            body = {"type": "about:blank", "title": exc.title, "status": 401, "detail": exc.detail}
            await ws.send_denial_response(
                Response(
                    orjson.dumps(body),
                    status_code=401,
                    media_type=PROBLEM_JSON,
                    headers={"WWW-Authenticate": 'Bearer realm="rideflow"'},
                )
            )
        else:  # a server without the denial extension: accept, then close at once
            await ws.accept(subprotocol=_selected(ws))
            await ws.close(Close.UNAUTHORIZED, exc.detail[:120])
        return
    if principal.kind != "user":
        await ws.accept(subprotocol=_selected(ws))
        await ws.close(Close.FORBIDDEN, "sockets are for accounts, not API keys")
        return
    await ws.accept(subprotocol=_selected(ws))
    gateway: Gateway = ws.state.gateway
    await gateway.serve(ws, principal)


def _selected(ws: WebSocket) -> str | None:
    return SUBPROTOCOL if SUBPROTOCOL in ws.scope.get("subprotocols", []) else None
