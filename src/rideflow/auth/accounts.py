"""Accounts in the record (SQL): registration, login checks, passwords, the disabled flag.

An email is unique whatever its case: `email_key`, its lower-cased form, carries the unique
constraint on both databases. A DRIVER account's id is its driver profile's id."""

from __future__ import annotations

import secrets
import time

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from rideflow.auth.passwords import Passwords
from rideflow.auth.principal import Role
from rideflow.auth.resets import stamp
from rideflow.auth.schemas import AccountView
from rideflow.drivers.schemas import DriverCreate
from rideflow.drivers.store import Drivers
from rideflow.errors import Conflict, NotFound, Unprocessable
from rideflow.record.db import Record
from rideflow.record.models import Account
from rideflow.redis.clock import from_us


def now_us() -> int:
    return time.time_ns() // 1000


def email_key(email: str) -> str:
    """What makes two emails the same account: case does not."""
    return email.strip().lower()


def new_account_id() -> str:
    return f"u-{secrets.token_hex(8)}"


def account_view(a: Account) -> AccountView:
    return AccountView(
        id=a.id,
        email=a.email,
        role=Role(a.role),
        name=a.name,
        disabled=a.disabled,
        created_at=from_us(a.created_us),
    )


class Accounts:
    """The account store; one per process."""

    def __init__(self, record: Record, passwords: Passwords, drivers: Drivers | None) -> None:
        self.record, self.passwords, self.drivers = record, passwords, drivers

    async def create(
        self,
        *,
        email: str,
        password: str,
        role: Role,
        name: str,
        vehicle: str | None = None,
        city: str | None = None,
    ) -> AccountView:
        """A new account; a DRIVER's driver profile is created with it (same id). 409 when the
        email is taken in any case."""
        if role is not Role.DRIVER and (vehicle is not None or city is not None):
            field = "vehicle" if vehicle is not None else "city"
            raise Unprocessable(f"only drivers have a {field}", field=field)
        if role is Role.DRIVER and self.drivers is None:
            raise RuntimeError("a driver account needs the driver store")
        password_hash = await self.passwords.hash(password)
        at = now_us()
        account = Account(
            id=new_account_id(),
            email=email.strip(),
            email_key=email_key(email),
            password_hash=password_hash,
            role=role.value,
            disabled=False,
            name=name,
            created_us=at,
            updated_us=at,
        )
        try:
            async with self.record.session() as s, s.begin():
                if await s.scalar(select(Account.id).where(Account.email_key == account.email_key)):
                    raise Conflict(_taken(email))
                s.add(account)
                await s.flush()  # the unique constraint decides a race between two inserts
                if role is Role.DRIVER and self.drivers is not None:
                    # Inside the transaction: a refused profile (unknown city) leaves no account.
                    await self.drivers.create(
                        DriverCreate(id=account.id, name=name, vehicle=vehicle or "", city=city)
                    )
        except IntegrityError as exc:
            raise Conflict(_taken(email)) from exc
        return account_view(account)

    async def find(self, email: str) -> Account | None:
        async with self.record.session(read_only=True) as s:
            return await s.scalar(select(Account).where(Account.email_key == email_key(email)))

    async def row(self, account_id: str) -> Account | None:
        async with self.record.session(read_only=True) as s:
            return await s.get(Account, account_id)

    async def get(self, account_id: str) -> AccountView:
        account = await self.row(account_id)
        if account is None:
            raise NotFound(f"no account with id {account_id!r}")
        return account_view(account)

    async def authenticate(self, email: str, password: str) -> Account | None:
        """The account when the password is its own (its hash upgraded if the costs changed);
        None for a wrong password or an unknown email alike, after the same work."""
        account = await self.find(email)
        ok, updated = await self.passwords.verify(
            password, account.password_hash if account else None
        )
        if not ok or account is None:
            return None
        if updated is not None:
            await self._store_hash(account.id, updated, expected=account.password_hash)
            account.password_hash = updated
        return account

    async def set_password(
        self, account_id: str, password: str, *, only_over: str | None = None
    ) -> bool:
        """Set the password; with `only_over` (a reset token's stamp), only when the current
        password is still the one the token was issued against (False otherwise). 404 when
        there is no such account."""
        account = await self.row(account_id)
        if account is None:
            raise NotFound(f"no account with id {account_id!r}")
        if only_over is not None and stamp(account.password_hash) != only_over:
            return False
        password_hash = await self.passwords.hash(password)
        return await self._store_hash(account_id, password_hash, expected=account.password_hash)

    async def set_disabled(self, email: str, disabled: bool) -> AccountView:
        """Disable or enable the account of `email`; 404 when there is none."""
        async with self.record.session() as s, s.begin():
            account = await s.scalar(select(Account).where(Account.email_key == email_key(email)))
            if account is None:
                raise NotFound(f"no account with email {email!r}")
            account.disabled = disabled
            account.updated_us = now_us()
        return account_view(account)

    async def _store_hash(self, account_id: str, value: str, expected: str | None = None) -> bool:
        """Store a new hash; with `expected`, only over that one (an upgrade at login must not
        undo a password changed meanwhile)."""
        q = update(Account).where(Account.id == account_id)
        if expected is not None:
            q = q.where(Account.password_hash == expected)
        async with self.record.session() as s, s.begin():
            result = await s.execute(q.values(password_hash=value, updated_us=now_us()))
        return bool(getattr(result, "rowcount", 0))


def _taken(email: str) -> str:
    return f"an account with email {email.strip()!r} already exists (emails ignore case)"
