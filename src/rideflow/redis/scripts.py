"""The Lua scripts, read from `lua/*.lua` with the shared prelude before each, and bound once per
Redis client."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from importlib import resources
from typing import Any, NamedTuple, Protocol

from redis.exceptions import NoScriptError

Arg = str | int | float

ORDER_EVENTS_CAP = 128
"""Entries kept (about: `MAXLEN ~`) in one order's event stream. A city's event stream is capped
by `Settings.event_caps()`: not at all while the recorder keeps it (it trims what it recorded)."""


class Store(StrEnum):
    """What a script that stores something under an idempotency key did."""

    CREATED = "CREATED"
    EXISTING = "EXISTING"
    """The key (or the id) already names it, for the same request: a replay."""
    CONFLICT = "CONFLICT"
    """The key names something stored for a different request."""


class Stored(NamedTuple):
    """The reply of `order_enqueue.lua` and `job_submit.lua`: the outcome and the id it names."""

    outcome: Store
    id: str


def parse_stored(reply: list[Any]) -> Stored:
    """An `{outcome, id}` reply, typed."""
    return Stored(Store(reply[0]), str(reply[1]))


class Executor(Protocol):
    """Anything that sends a raw command: a redis-py client or a `PipelinedRedis`."""

    async def execute_command(self, *args: Any) -> Any: ...


class Lua:
    """One script bound to a client: EVALSHA, falling back to EVAL (which caches it again) when
    Redis has lost its script cache, after a restart say.

    Thinner than redis-py's `Script` on purpose: it sits on every hot path, where that wrapper's
    per-call work costs about a fifth of a request.
    """

    __slots__ = ("redis", "sha", "source")

    def __init__(self, redis: Executor, source: str) -> None:
        self.redis, self.source = redis, source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg] = ()) -> Any:
        try:
            return await self.redis.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.execute_command("EVAL", self.source, len(keys), *keys, *args)


@dataclass(frozen=True, slots=True)
class Scripts:
    """Each field holds the script of the `.lua` file with the same name."""

    order_enqueue: Lua
    order_begin: Lua
    order_retry: Lua
    order_transition: Lua
    offer_create: Lua
    offer_accept: Lua
    offer_release: Lua
    due_claim: Lua
    job_submit: Lua
    job_begin: Lua
    job_start: Lua
    job_finish: Lua
    job_promote: Lua
    job_cancel: Lua
    job_redrive: Lua
    driver_create: Lua
    driver_positions: Lua
    driver_status: Lua
    driver_rate: Lua
    pool_prune: Lua
    request_log_add: Lua
    rate_fixed_window: Lua
    rate_sliding_window: Lua
    rate_token_bucket: Lua
    menu_unlock: Lua
    food_order: Lua
    food_release: Lua
    trip_pin_check: Lua
    refresh_issue: Lua
    refresh_rotate: Lua

    @classmethod
    def register(cls, redis: Executor) -> Scripts:
        """Bind every script, its source the prelude followed by its own file, to `redis`."""
        return cls(**{f.name: Lua(redis, source(f.name)) for f in fields(cls)})


def source(name: str) -> str:
    """The text Redis runs for script `name`: the prelude's local functions, then the script,
    as one chunk (so the SHA1 covers both, and Lua error line numbers count the prelude too)."""
    folder = resources.files("rideflow") / "lua"
    prelude = (folder / "prelude.lua").read_text("utf-8")
    return prelude + (folder / f"{name}.lua").read_text("utf-8")
