"""Pure ASGI middleware at the edge: body size cap, JSON bodies only, client address, the
caller (a bearer token verified once, before routing) and rate limits per user or per address."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rideflow.api.problems import UNLIMITED_PREFIXES, problem, redis_failure
from rideflow.api.ratelimit import RateLimiter, client_key
from rideflow.api.requestlog import CLIENT_SCOPE_KEY, RATE_SCOPE_KEY
from rideflow.api.security import PRINCIPAL, TOKEN_URL, bearer_token
from rideflow.auth.principal import Principal
from rideflow.auth.tokens import AccessTokens
from rideflow.config import Network
from rideflow.errors import Unauthorized


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


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_ROUTES = frozenset({("POST", TOKEN_URL)})
"""Routes whose body is a form by specification (the OAuth2 password flow)."""
JSON = "application/json"


def json_media_type(value: bytes) -> bool:
    """Whether a `Content-Type` is JSON: `application/json` or `application/<x>+json`, with no
    charset but UTF-8 (JSON is UTF-8, RFC 8259)."""
    media, _, params = value.partition(b";")
    media = media.strip().lower()
    if media != b"application/json" and not (
        media.startswith(b"application/") and media.endswith(b"+json")
    ):
        return False
    for param in params.split(b";"):
        name, _, v = param.partition(b"=")
        if name.strip().lower() == b"charset" and v.strip(b' "').lower() not in (b"utf-8", b"utf8"):
            return False
    return True


class JsonBodyMiddleware:
    """Refuse a state-changing request whose body is not JSON with 415, before anything reads
    it. A form or `text/plain` body is what a web page may send cross-site without a CORS
    preflight; demanding JSON makes the browser ask first. Headers only: no body is read."""

    def __init__(self, app: ASGIApp, exempt: frozenset[tuple[str, str]] = FORM_ROUTES) -> None:
        self.app, self.exempt = app, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in STATE_CHANGING
            or (scope["method"], scope["path"]) in self.exempt
        ):
            await self.app(scope, receive, send)
            return
        body = False
        media: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                body = body or value.strip() != b"0"
            elif name == b"transfer-encoding":
                body = True
            elif name == b"content-type":
                media = value
        if not body or (media is not None and json_media_type(media)):
            await self.app(scope, receive, send)
            return
        sent = media.decode("latin-1")[:100] if media is not None else "no Content-Type"
        response = problem(
            415,
            "Unsupported media type",
            f"{scope['method']} {scope['path']} takes a JSON body: send "
            f"`Content-Type: {JSON}` (got {sent})",
        )
        await response(scope, receive, send)


def header_token(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of a request's raw headers, read as the routes read it."""
    for name, value in headers:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None


def verified_caller(scope: Scope) -> Principal | None:
    """The caller a bearer token names, kept in the scope so that the route does not verify it
    again; None without a token or with one that fails (the route answers 401 for it)."""
    token = header_token(scope["headers"])
    if token is None:
        return None
    tokens: AccessTokens = scope["state"]["tokens"]  # made by the lifespan
    try:
        principal = tokens.verify(token)
    except Unauthorized:
        return None
    scope[PRINCIPAL] = principal
    return principal


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


def scope_address(scope: Scope, trusted: Sequence[Network]) -> str:
    """`client_address` of a request, from its peer and every `X-Forwarded-For` line (a proxy
    may append its own line rather than extend the first: read them all)."""
    peer = scope["client"][0] if scope.get("client") else None
    forwarded = (
        ",".join(v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for")
        or None
    )
    return client_address(peer, forwarded, trusted)


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


class RateLimitMiddleware:
    """Count every request against its route's policy; 429 when over, 503 when Redis is down.

    A request with a valid bearer token is counted as its user (`user:<subject>`) under their
    role's policy; any other as its address (`ip:<addr>`): anonymous calls, an invalid token,
    and API keys, which are not looked up here (a key that was not verified would let a
    client mint fresh budgets by varying it)."""

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
        caller = verified_caller(scope)
        client = client_key(caller, scope_address(scope, self.trusted))
        scope[CLIENT_SCOPE_KEY] = client
        try:
            decision = await limiter.hit(name, client, caller.role if caller else None)
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
