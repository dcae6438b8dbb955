"""Pure ASGI middleware at the edge: body size cap, client address, rate limits."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rideflow.api.problems import UNLIMITED_PREFIXES, problem, redis_failure
from rideflow.api.ratelimit import RateLimiter
from rideflow.api.requestlog import CLIENT_SCOPE_KEY, RATE_SCOPE_KEY

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BodyTooLarge(Exception):
    """The request body passed the configured cap while being read."""


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, by declared length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                # The server holds the body to its declared length: no need to count it.
                if value.isdigit() and int(value) <= self.max_bytes:
                    await self.app(scope, receive, send)
                else:
                    await self._refuse(scope, receive, send)
                return
        seen = 0
        over = False

        async def counted_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                over = True
                raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The app turns a failed body read into its own error; ours replaces it.
            if not over:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._refuse(scope, receive, send)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "Payload too large",
            f"the request body exceeds the limit of {self.max_bytes} bytes",
        )
        await response(scope, receive, send)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy, in which case the
    right-most address of `X-Forwarded-For` that is not itself a trusted proxy."""
    if not peer:
        return "unknown"
    if not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # a garbled hop: trust nothing to its left
        client = hop
        if not _is_trusted(hop, trusted):
            break
    return client


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


class RateLimitMiddleware:
    """Count every request against its route's policy; 429 when over, 503 when Redis is down."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app, self.trusted = app, trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(UNLIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter = scope["state"]["limiter"]  # made by the lifespan
        name = limiter.policy_for(scope["method"], path)
        if name is None:
            await self.app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else None
        # A proxy may append its own header line rather than extend the first: read them all.
        forwarded = (
            ",".join(v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for")
            or None
        )
        client = client_address(peer, forwarded, self.trusted)
        scope[CLIENT_SCOPE_KEY] = client
        try:
            decision = await limiter.hit(name, client)
        except RedisError as exc:
            await redis_failure(exc, f"rate limit of {path}")(scope, receive, send)
            return
        scope[RATE_SCOPE_KEY] = (name, "allow" if decision.allowed else "deny")
        headers = decision.headers()
        if not decision.allowed:
            response = problem(
                429,
                "Too many requests",
                f"rate limit {decision.name!r} allows {decision.policy.limit} requests per "
                f"{decision.policy.window_s:g} s; retry in {decision.retry_after_s} s",
                headers=dict(headers),
            )
            await response(scope, receive, send)
            return
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *raw]
            await send(message)

        await self.app(scope, receive, send_with_headers)
