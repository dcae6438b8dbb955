"""Roles and the caller a request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Role(StrEnum):
    ADMIN = "ADMIN"
    CUSTOMER = "CUSTOMER"
    DRIVER = "DRIVER"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: an account (from its access token) or a back end (from its API
    key). A CUSTOMER account is the customer `subject`; a DRIVER account is the driver
    `subject` (the driver's profile has the account's id)."""

    subject: str
    role: Role
    kind: Literal["user", "service"] = "user"
    token_id: str = ""
    """The access token's `jti`, or the API key's id."""

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def service(self) -> bool:
        """A back end: it names the customers (or drivers) it acts for in the body, as the seed
        contracts do; an account acts only as itself."""
        return self.kind == "service"
