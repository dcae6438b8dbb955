"""Cache-aside for menu reads, with versioned keys and single flight.

- **Versioned keys.** Every committed write to a restaurant or its menu bumps the restaurant's
  version counter in Redis *after* the commit (`invalidate`). A cached menu lives under a key
  naming the version it was read at (`rf:{city}:menu:<id>:v<n>`). A reader that read version n
  before a write, then loaded the old rows, can only fill `v<n>`, which no reader looks at once
  the counter is n+1: stale data never lands under the current key. A reader that read the
  version after the write's bump loads rows committed before the bump, so a write followed by
  a read never returns the old menu.
- **One round trip per hit**: a process remembers the version it last read per restaurant and
  reads the counter and that version's entry with one `MGET`; only after a write (the counter
  moved on) does it take a second read.
- **TTL plus jitter**, so entries filled together do not expire together.
- **Single flight.** In one process, concurrent misses of one version share one load (a future
  per key). Across processes, the loader holds a short `SET NX PX` lock; the others poll the
  cache key (bounded by `menu_fill_wait_s`, then they read SQL themselves), and a lock whose
  holder died lapses after `menu_fill_lock_ms`, when the next poller takes it over.
- **ETag**: the strong validator is a hash of the exact bytes served, stored with them.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.redis import keys
from rideflow.redis.scripts import Scripts

POLL_S = 0.005
"""How often a process waiting for another's fill looks at the cache key."""

SEEN_KEPT = 100_000
"""Restaurants whose last version a process remembers (then it starts over)."""

Loader = Callable[[str, str], Awaitable[bytes]]
"""(city, restaurant id) -> the menu's JSON bytes, from SQL (raises NotFound)."""


@dataclass(frozen=True, slots=True)
class CachedMenu:
    etag: str  # quoted, strong
    body: bytes


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _pack(menu: CachedMenu) -> str:
    return menu.etag + "\n" + menu.body.decode()


def _unpack(raw: str | bytes) -> CachedMenu:
    text = raw.decode() if isinstance(raw, bytes) else raw
    etag, _, body = text.partition("\n")
    return CachedMenu(etag, body.encode())


class MenuCache:
    """One per process, on the process' shared (decoding) client: menus are cached as text."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings, load: Loader) -> None:
        self.redis, self.scripts, self.settings, self.load = redis, scripts, settings, load
        self._flights: dict[str, asyncio.Task[CachedMenu]] = {}
        # The version last read per restaurant: a hit then costs one round trip.
        self._seen: dict[tuple[str, str], int] = {}

    async def version(self, city: str, restaurant_id: str) -> int:
        raw = await self.redis.get(keys.menu_version(city, restaurant_id))
        return int(raw) if raw else 0

    async def invalidate(self, city: str, restaurant_id: str) -> int:
        """Call after a write committed: readers move to a new version. Returns it."""
        return int(await self.redis.incr(keys.menu_version(city, restaurant_id)))

    async def menu(self, city: str, restaurant_id: str) -> CachedMenu:
        """The menu: cached, or loaded once (per version, across processes) and cached."""
        if not self.settings.menu_cache_enabled:
            body = await self.load(city, restaurant_id)
            return CachedMenu(etag_of(body), body)
        # One round trip when the version is the one this process saw last: the counter and
        # that version's entry, read together (one slot: MGET is atomic, also on a cluster).
        seen = self._seen.get((city, restaurant_id), 0)
        counter, raw = await self.redis.mget(
            keys.menu_version(city, restaurant_id), keys.menu_cache(city, restaurant_id, seen)
        )
        version = int(counter) if counter else 0
        if version == seen and raw is not None:
            return _unpack(raw)
        if len(self._seen) >= SEEN_KEPT:
            self._seen.clear()
        self._seen[(city, restaurant_id)] = version
        key = keys.menu_cache(city, restaurant_id, version)
        if version != seen:
            raw = await self.redis.get(key)
            if raw is not None:
                return _unpack(raw)
        # One fill per version in this process, as a task of its own: a request that goes
        # away (its client disconnected) does not cancel the fill others wait for.
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.create_task(self._fill(city, restaurant_id, version, key))
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)

    def _landed(self, key: str, flight: asyncio.Task[CachedMenu]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: a failure nobody awaited any more is not logged

    async def _fill(self, city: str, restaurant_id: str, version: int, key: str) -> CachedMenu:
        lock = keys.menu_fill_lock(city, restaurant_id, version)
        token = secrets.token_hex(8)
        deadline = time.monotonic() + self.settings.menu_fill_wait_s
        while True:
            if await self.redis.set(lock, token, nx=True, px=self.settings.menu_fill_lock_ms):
                try:
                    # Another process may have filled it between our miss and our lock.
                    raw = await self.redis.get(key)
                    if raw is not None:
                        return _unpack(raw)
                    body = await self.load(city, restaurant_id)
                    menu = CachedMenu(etag_of(body), body)
                    ttl = self.settings.menu_cache_ttl_s + random.randint(
                        0, self.settings.menu_cache_jitter_s
                    )
                    await self.redis.set(key, _pack(menu), ex=ttl)
                    return menu
                finally:
                    await self.scripts.menu_unlock(keys=[lock], args=[token])
            # Someone else is loading it: wait for their fill, bounded.
            while time.monotonic() < deadline:
                await asyncio.sleep(POLL_S)
                raw = await self.redis.get(key)
                if raw is not None:
                    return _unpack(raw)
                if not await self.redis.exists(lock):
                    break  # its holder finished without filling, or died: try to take it
            else:
                # Waited long enough: read SQL ourselves (not cached: the holder may yet fill).
                body = await self.load(city, restaurant_id)
                return CachedMenu(etag_of(body), body)
