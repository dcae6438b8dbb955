"""Request and response bodies of accounts, tokens, password resets and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rideflow.auth.passwords import MAX_LENGTH, MIN_LENGTH
from rideflow.auth.principal import Role
from rideflow.schemas import Body

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]
Password = Annotated[
    str,
    Field(
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
        description=f"{MIN_LENGTH} to {MAX_LENGTH} characters",
    ),
]
OpaqueToken = Annotated[str, Field(min_length=16, max_length=256)]


class Register(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "asha@example.com",
                    "password": "correct horse battery",
                    "role": "CUSTOMER",
                    "name": "Asha Rao",
                },
                {
                    "email": "rohit@example.com",
                    "password": "a long driver passphrase",
                    "role": "DRIVER",
                    "name": "Rohit Sharma",
                    "vehicle": "Bike · KA01HX2847",
                    "city": "blr",
                },
            ]
        },
    )

    email: Email
    password: Password
    role: Literal["CUSTOMER", "DRIVER"] = Field(
        default="CUSTOMER", description="ADMIN accounts are made with `rideflow users create`"
    )
    name: str = Field(min_length=1, max_length=120)
    vehicle: str | None = Field(default=None, max_length=120, description="Drivers only")
    city: str | None = Field(
        default=None, max_length=16, description="Drivers only: city code; the default city"
    )


class AccountView(BaseModel):
    id: str = Field(description="A CUSTOMER's customer id; a DRIVER's driver id")
    email: str
    role: Role
    name: str
    disabled: bool
    created_at: datetime


class TokenPair(BaseModel):
    """An OAuth2 token response, plus the refresh token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid for")
    refresh_token: str = Field(description="Single use: POST /v1/auth/refresh for a new pair")


class RefreshRequest(Body):
    refresh_token: OpaqueToken


class ResetRequest(Body):
    email: Email


class ResetConfirm(Body):
    token: OpaqueToken
    new_password: Password


class ApiKeyCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "merchant-backend", "role": "CUSTOMER"}]},
    )

    name: str = Field(min_length=1, max_length=120)
    role: Role


class ApiKeyView(BaseModel):
    id: str
    name: str
    role: Role
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    created_by: str | None
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyView):
    key: str = Field(description="The key itself: shown this once, stored only as a hash")


class ApiKeyList(BaseModel):
    keys: list[ApiKeyView]
