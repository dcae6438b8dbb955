"""The Lua scripts, read from `lua/*.lua` and registered once per Redis client."""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@dataclass(frozen=True, slots=True)
class Scripts:
    """Each field holds the script of the `.lua` file with the same name."""

    ride_enqueue: AsyncScript
    ride_begin: AsyncScript
    ride_reserve: AsyncScript
    ride_retry: AsyncScript
    ride_finish: AsyncScript
    retry_claim: AsyncScript
    driver_create: AsyncScript
    driver_positions: AsyncScript
    driver_status: AsyncScript
    pool_prune: AsyncScript
    rate_fixed_window: AsyncScript
    rate_sliding_window: AsyncScript
    rate_token_bucket: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        """Register every script with `redis` (EVALSHA, falling back to EVAL after a restart)."""
        folder = resources.files("rideflow") / "lua"
        loaded = {
            f.name: redis.register_script((folder / f"{f.name}.lua").read_text("utf-8"))
            for f in fields(cls)
        }
        return cls(**loaded)
