"""The identity services of a process, built once: accounts, refresh tokens, password resets,
API keys, access tokens."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from rideflow.auth.accounts import Accounts
from rideflow.auth.apikeys import ApiKeys
from rideflow.auth.passwords import Passwords
from rideflow.auth.refresh import RefreshTokens
from rideflow.auth.resets import PasswordResets
from rideflow.auth.revocations import Revocations, keep_for
from rideflow.auth.tokens import AccessTokens
from rideflow.config import Settings
from rideflow.drivers.store import Drivers
from rideflow.record.db import Record
from rideflow.redis.scripts import Scripts


@dataclass(frozen=True, slots=True)
class Identity:
    accounts: Accounts
    refresh: RefreshTokens
    resets: PasswordResets
    api_keys: ApiKeys
    tokens: AccessTokens
    revocations: Revocations


def build_identity(
    settings: Settings,
    redis: Redis,
    scripts: Scripts,
    record: Record,
    drivers: Drivers | None,
    tokens: AccessTokens,
) -> Identity:
    revocations = Revocations(redis, keep_for(settings))
    tokens.revocations = revocations  # read once its `start` is awaited
    return Identity(
        accounts=Accounts(record, Passwords(settings), drivers),
        refresh=RefreshTokens(redis, scripts, settings),
        resets=PasswordResets(redis, settings),
        api_keys=ApiKeys(record, redis),
        tokens=tokens,
        revocations=revocations,
    )
