"""Service API keys: `rfk_<id>_<secret>`, made by an ADMIN with a role, shown once, kept as a
SHA-256 in SQL (the record), revocable. The per-request check reads a Redis cache of digest ->
`id|role` (filled from SQL on a miss); a revocation overwrites the entry with a tombstone, so
no fill that read SQL before the revocation can bring the key back."""

from __future__ import annotations

import secrets
import time
from typing import cast

from redis.asyncio import Redis
from sqlalchemy import select, update

from rideflow.auth.principal import Principal, Role
from rideflow.auth.refresh import digest
from rideflow.auth.schemas import ApiKeyCreated, ApiKeyView
from rideflow.errors import NotFound
from rideflow.record.db import Record
from rideflow.record.models import ApiKey
from rideflow.redis import keys
from rideflow.redis.clock import from_us

KEY_PREFIX = "rfk_"
MAX_KEY_LENGTH = 128
CACHE_TTL_S = 3600
"""A cached key (or tombstone) is kept this long; tombstones must outlive any fill in flight."""
MISS_TTL_S = 60
"""An unknown digest is remembered this long, so a stream of made-up keys does not reach SQL."""
REFUSED = "-"


def key_view(k: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=k.id,
        name=k.name,
        role=Role(k.role),
        prefix=k.prefix,
        created_by=k.created_by,
        created_at=from_us(k.created_us),
        revoked_at=from_us(k.revoked_us) if k.revoked_us is not None else None,
    )


class ApiKeys:
    def __init__(self, record: Record, redis: Redis) -> None:
        self.record, self.redis = record, redis

    async def create(self, name: str, role: Role, created_by: str | None) -> ApiKeyCreated:
        key_id = secrets.token_hex(8)
        raw = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        row = ApiKey(
            id=key_id,
            name=name,
            role=role.value,
            key_hash=digest(raw),
            prefix=raw[: len(KEY_PREFIX) + len(key_id) + 5],
            created_by=created_by,
            created_us=time.time_ns() // 1000,
            revoked_us=None,
        )
        async with self.record.session() as s, s.begin():
            s.add(row)
        await self.redis.set(keys.api_key(row.key_hash), f"{key_id}|{role.value}", ex=CACHE_TTL_S)
        return ApiKeyCreated(**key_view(row).model_dump(), key=raw)

    async def list(self) -> list[ApiKeyView]:
        async with self.record.session(read_only=True) as s:
            rows = await s.scalars(select(ApiKey).order_by(ApiKey.created_us, ApiKey.id))
            return [key_view(k) for k in rows]

    async def revoke(self, key_id: str) -> None:
        """Revoke a key (again: no change); 404 when there is no such key."""
        async with self.record.session() as s, s.begin():
            row = await s.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"no API key with id {key_id!r}")
            if row.revoked_us is None:
                await s.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .values(revoked_us=time.time_ns() // 1000)
                )
            key_hash = row.key_hash
        await self.redis.set(keys.api_key(key_hash), REFUSED, ex=CACHE_TTL_S)

    async def verify(self, raw: str) -> Principal | None:
        """The service a key stands for; None for a key unknown or revoked."""
        if not raw.startswith(KEY_PREFIX) or len(raw) > MAX_KEY_LENGTH:
            return None
        key_hash = digest(raw)
        cache = keys.api_key(key_hash)
        cached = cast(str | None, await self.redis.get(cache))
        if cached is None:
            async with self.record.session(read_only=True) as s:
                row = await s.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
            live = row is not None and row.revoked_us is None
            cached = f"{row.id}|{row.role}" if row is not None and live else REFUSED
            # NX: a creation or revocation written meanwhile knows better than this read.
            await self.redis.set(cache, cached, ex=CACHE_TTL_S if live else MISS_TTL_S, nx=True)
        if cached == REFUSED:
            return None
        key_id, _, role = cached.partition("|")
        return Principal(subject=key_id, role=Role(role), kind="service", token_id=key_id)
