"""Password hashing: argon2id through pwdlib, always off the event loop (a hash costs tens to
hundreds of milliseconds of CPU by design)."""

from __future__ import annotations

import asyncio
import secrets

from pwdlib import PasswordHash
from pwdlib.exceptions import PwdlibError
from pwdlib.hashers.argon2 import Argon2Hasher

from rideflow.config import Settings

MIN_LENGTH = 8
MAX_LENGTH = 128
"""Passwords are 8 to 128 characters: long passphrases welcome, a megabyte of input is not."""


class Passwords:
    """Hashes and verifies passwords with the configured argon2id costs."""

    def __init__(self, settings: Settings) -> None:
        hasher = Argon2Hasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
        )
        self._hash = PasswordHash((hasher,))
        self._dummy: str | None = None
        self._dummy_lock = asyncio.Lock()

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hash.hash, password)

    async def verify(self, password: str, stored: str | None) -> tuple[bool, str | None]:
        """Whether `password` matches `stored`, and the hash to store instead when the costs
        changed since it was made. Without a stored hash (an unknown email) a dummy hash is
        verified all the same, so the answer takes as long and says nothing."""
        dummy = await self._dummy_hash()  # made before either answer: the first costs the same
        try:
            ok, updated = await asyncio.to_thread(
                self._hash.verify_and_update, password, stored or dummy
            )
        except PwdlibError:  # a stored value that is no hash of ours
            return False, None
        if stored is None:
            return False, None
        return ok, updated

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            async with self._dummy_lock:
                if self._dummy is None:
                    self._dummy = await self.hash(secrets.token_urlsafe(16))
        return self._dummy
