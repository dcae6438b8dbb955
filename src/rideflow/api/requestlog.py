"""The request log: every API request leaves a compact entry (route template, method, status,
latency, client, rate-limit policy and decision) on the request-log stream, for the recorder.

No Redis round trip is added to a request: entries are buffered in the process and flushed with
one call (a Lua step adding an entry each) every `request_log_flush_ms` or `request_log_buffer`
entries, and at shutdown. A process that crashes loses at most its unflushed buffer: these are
analytics. The stream is capped (`MAXLEN ~ request_log_cap`), so it stays bounded when no
recorder runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rideflow.api.ratelimit import client_key
from rideflow.api.security import PRINCIPAL
from rideflow.auth.principal import Principal
from rideflow.config import Network, Settings
from rideflow.metrics.families import observe_request, redis_error
from rideflow.redis import keys
from rideflow.redis.scripts import Scripts

log = logging.getLogger("rideflow.api")

RATE_SCOPE_KEY = "rideflow.rate"
"""Where the rate-limit middleware leaves (policy, 'allow' | 'deny') for the request log."""
CLIENT_SCOPE_KEY = "rideflow.client"
"""Where the rate-limit middleware leaves the client it counted (`user:<subject>` or
`ip:<addr>`)."""
UNMATCHED = "(unmatched)"
"""The route of a request no route matched (its path is not kept: unbounded and the client's)."""


class RequestLog:
    """The process's buffer of entries and the task that flushes it."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.script = Scripts.register(redis).request_log_add
        self.cap = settings.request_log_cap
        self.every_s = settings.request_log_flush_ms / 1000
        self.most = settings.request_log_buffer
        self.buffer: list[dict[str, str | int]] = []
        self.full = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.running = True
        self.counts: Counter[str] = Counter()

    def add(self, entry: dict[str, str | int]) -> None:
        self.buffer.append(entry)
        if len(self.buffer) >= self.most:
            self.full.set()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="request-log")

    async def stop(self) -> None:
        """Stop flushing on a timer and flush what is left. The loop is told to end, not
        cancelled: redis-py may swallow a cancellation that lands in a command (see
        workers/runner.py), which would leave the loop running and the shutdown waiting."""
        self.running = False
        self.full.set()
        if self.task is not None:
            await self.task
        await self.flush()

    async def _run(self) -> None:
        while self.running:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every_s):
                    await self.full.wait()
            self.full.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send the buffer in one pipelined round trip; on Redis trouble it is dropped (and
        counted), never retried into a growing backlog."""
        if not self.buffer:
            return
        entries, self.buffer = self.buffer, []
        args: list[str | int] = [self.cap]
        for entry in entries:
            args.append(len(entry))
            for pair in entry.items():
                args.extend(pair)
        try:
            # One command for the buffer (the script adds one entry each): redis-py packs and
            # parses a pipeline of XADDs command by command, all of it on the event loop.
            await self.script(keys=[keys.request_log()], args=args)
        except RedisError as exc:
            redis_error(exc)
            self.counts["dropped"] += len(entries)
            log.warning("request log: %d entries dropped: %s", len(entries), exc)
            return
        self.counts["flushes"] += 1
        self.counts["entries"] += len(entries)


class RequestLogMiddleware:
    """Times each HTTP request for the metrics (`rideflow_http_request_duration_seconds`) and,
    when the request log is on, hands its entry to the process's `RequestLog` (made by the
    lifespan, in `scope['state']['request_log']`)."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app, self.trusted = app, trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter_ns()
        status = 500  # an app that raises before answering answers 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            _log(scope, status, started, self.trusted)


Template = tuple[re.Pattern[str], frozenset[str], str]


def route_templates(app: Any) -> list[Template]:
    """(path regex, methods, template) of every route of `app`, included routers' too."""
    out: list[Template] = []

    def walk(routes: Any, prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                context = getattr(route, "include_context", None)
                walk(included.routes, prefix + getattr(context, "prefix", ""))
            elif isinstance(getattr(route, "path", None), str):
                template = prefix + route.path
                methods = frozenset(getattr(route, "methods", None) or ())
                out.append((compile_path(template)[0], methods, template))

    walk(getattr(getattr(app, "router", None), "routes", ()), "")
    return out


def _route_of(scope: Scope) -> str:
    """The route template of a request answered before routing (413, 429, 503 at the edge);
    UNMATCHED when no route has its path (a 404). Only such requests pay for the search."""
    app = scope.get("app")
    templates = _TEMPLATES.get(id(app))
    if templates is None:
        templates = _TEMPLATES[id(app)] = route_templates(app)
    path, method = scope.get("path", ""), scope.get("method", "")
    found = UNMATCHED
    for regex, methods, template in templates:
        if regex.match(path):
            if not methods or method in methods:
                return template
            found = template if found == UNMATCHED else found  # a 405: the path matches
    return found


_TEMPLATES: dict[int, list[Template]] = {}


def _log(scope: Scope, status: int, started_ns: int, trusted: Sequence[Network]) -> None:
    """The request's latency into the metrics and, when the request log is on, its entry; the
    route template is found once for both."""
    elapsed_ns = time.perf_counter_ns() - started_ns
    route = scope.get("route")
    template = route.path if route is not None else _route_of(scope)
    observe_request(scope["method"], template, status, elapsed_ns / 1e9)
    state = scope.get("state") or {}
    sink: RequestLog | None = state.get("request_log")
    if sink is None:
        return
    policy, decision = scope.get(RATE_SCOPE_KEY) or ("", "")
    client = scope.get(CLIENT_SCOPE_KEY)
    if client is None:  # not rate limited: derived here, the same way
        from rideflow.api.middleware import scope_address  # it imports this module

        address = scope_address(scope, trusted)
        # The route's caller, when it took one (left in the scope by `authenticate`).
        caller = scope.get(PRINCIPAL)
        client = client_key(caller if isinstance(caller, Principal) else None, address)
    sink.add(
        {
            "at": time.time_ns() // 1000,
            "method": scope["method"],
            "route": template,
            "status": status,
            "latency_us": elapsed_ns // 1000,
            "client": client,
            "policy": policy,
            "decision": decision,
        }
    )
