"""The Lua scripts, read from `lua/*.lua` and bound once per Redis client."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, Protocol

from redis.exceptions import NoScriptError

Arg = str | int | float


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
    offer_answer: Lua
    due_claim: Lua
    job_submit: Lua
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
    rate_fixed_window: Lua
    rate_sliding_window: Lua
    rate_token_bucket: Lua

    @classmethod
    def register(cls, redis: Executor) -> Scripts:
        """Bind every script to `redis`."""
        folder = resources.files("rideflow") / "lua"
        return cls(
            **{
                f.name: Lua(redis, (folder / f"{f.name}.lua").read_text("utf-8"))
                for f in fields(cls)
            }
        )
