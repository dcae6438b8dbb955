"""Accounts and tokens: register, log in (OAuth2 password flow, so "Authorize" in /docs works),
refresh, log out, who am I, password reset; and the ADMIN's service API keys."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.security import OAuth2PasswordRequestForm
from starlette.responses import Response

from rideflow.api.middleware import client_address
from rideflow.api.problems import responses
from rideflow.api.ratelimit import RateLimiter
from rideflow.api.requestlog import CLIENT_SCOPE_KEY
from rideflow.api.security import AdminCaller, AnyCaller
from rideflow.auth.accounts import email_key
from rideflow.auth.identity import Identity
from rideflow.auth.principal import Role
from rideflow.auth.refresh import digest
from rideflow.auth.schemas import (
    AccountView,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    RefreshRequest,
    Register,
    ResetConfirm,
    ResetRequest,
    TokenPair,
)
from rideflow.config import Settings
from rideflow.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from rideflow.jobs.schemas import JobSubmit
from rideflow.jobs.store import Jobs

log = logging.getLogger("rideflow.auth")
router = APIRouter(tags=["auth"])
WRONG = "wrong email or password"
DISABLED = "this account is disabled; ask an administrator"


async def _identity(request: Request) -> Identity:
    identity: Identity = request.state.identity
    return identity


IdentityDep = Annotated[Identity, Depends(_identity)]


@router.post(
    "/v1/auth/register",
    status_code=201,
    response_model=AccountView,
    responses=responses(409, 422),
    summary="Create a CUSTOMER or DRIVER account (a DRIVER gets their driver profile, same id)",
)
async def register(body: Register, identity: IdentityDep) -> AccountView:
    return await identity.accounts.create(
        email=body.email,
        password=body.password,
        role=Role(body.role),
        name=body.name,
        vehicle=body.vehicle,
        city=body.city,
    )


@router.post(
    "/v1/auth/token",
    response_model=TokenPair,
    responses=responses(401, 403, 422),
    summary="Log in (OAuth2 password flow: form fields `username` = email, `password`)",
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, identity: IdentityDep
) -> TokenPair:
    await _login_allowed(request, form.username)
    account = await identity.accounts.authenticate(form.username, form.password)
    if account is None:
        raise Unauthorized(WRONG)
    if account.disabled:
        # Said only to whoever knows the password: it tells a stranger nothing.
        raise Forbidden(DISABLED)
    return await _pair(
        identity, account.id, Role(account.role), await identity.refresh.issue(account.id)
    )


@router.post(
    "/v1/auth/refresh",
    response_model=TokenPair,
    responses=responses(401, 403, 422),
    summary="A new access token and refresh token for a refresh token (which is used up)",
)
async def refresh(body: RefreshRequest, identity: IdentityDep) -> TokenPair:
    rotated = await identity.refresh.rotate(body.refresh_token)
    account = await identity.accounts.row(rotated.user_id)
    if account is None or account.disabled:
        await identity.refresh.revoke_family(rotated.user_id, rotated.family)
        if account is None:
            raise Unauthorized("the account of this refresh token no longer exists")
        raise Forbidden(DISABLED)
    return await _pair(identity, account.id, Role(account.role), rotated.token)


@router.post(
    "/v1/auth/logout",
    status_code=204,
    responses=responses(422),
    summary="Revoke a refresh token and every token of its login",
)
async def logout(body: RefreshRequest, identity: IdentityDep) -> Response:
    await identity.refresh.revoke(body.refresh_token)  # unknown: nothing to revoke, same answer
    return Response(status_code=204)


@router.get(
    "/v1/me",
    response_model=AccountView,
    responses=responses(401, 403, 404),
    summary="The caller's account",
)
async def me(caller: AnyCaller, identity: IdentityDep) -> AccountView:
    if caller.service:
        raise NotFound(f"an API key ({caller.subject}) has no account; /v1/me is for accounts")
    view = await identity.accounts.get(caller.subject)
    if view.disabled:
        raise Forbidden(DISABLED)
    return view


@router.post(
    "/v1/auth/password-reset",
    status_code=202,
    response_class=Response,
    responses=responses(422),
    summary="Email a one-time password-reset token (always 202: the answer says nothing about "
    "whether the email has an account)",
)
async def password_reset(body: ResetRequest, request: Request, identity: IdentityDep) -> Response:
    settings: Settings = request.state.settings
    limiter: RateLimiter = request.state.limiter
    decision = await limiter.hit(
        "password-reset", _account(body.email), policy=settings.login_account_limit
    )
    account = await identity.accounts.find(body.email) if decision.allowed else None
    if account is not None and not account.disabled:
        reset = await identity.resets.issue(account.id, account.password_hash)
        jobs: Jobs = request.state.jobs
        minutes = max(1, settings.password_reset_ttl_s // 60)
        await jobs.submit(
            JobSubmit(
                task="send_email",
                priority="high",
                payload={
                    "to": account.email,
                    "subject": "Reset your RideFlow password",
                    "body": f"Someone asked to reset the password of {account.email}.\n"
                    f"Your reset token (valid {minutes} min, once):\n\n{reset}\n\n"
                    "POST /v1/auth/password-reset/confirm with "
                    '{"token": "<the token>", "new_password": "..."}\n'
                    "If it was not you, ignore this message.\n",
                },
            )
        )
    return Response(status_code=202)


@router.post(
    "/v1/auth/password-reset/confirm",
    status_code=204,
    responses=responses(401, 404, 422),
    summary="Set a new password with a reset token (once); every login of the account ends",
    description="Its refresh tokens are revoked and its access tokens refused from now on (by "
    "every API process within about a second); its sockets are closed with 4401.",
)
async def password_reset_confirm(body: ResetConfirm, identity: IdentityDep) -> Response:
    reset = await identity.resets.consume(body.token)
    if reset is None:
        raise Unauthorized("the reset token is not valid (unknown, used or expired)")
    if not await identity.accounts.set_password(
        reset.account_id, body.new_password, only_over=reset.stamp
    ):
        raise Unauthorized("the reset token is not valid (the password changed since it was sent)")
    await identity.refresh.revoke_user(reset.account_id)
    await identity.revocations.revoke(reset.account_id)  # its access tokens too
    return Response(status_code=204)


KeyId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


@router.post(
    "/v1/admin/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=responses(401, 403, 422),
    tags=["admin"],
    summary="Create a service API key (send it as `X-API-Key`); the key is shown only here",
)
async def create_api_key(
    body: ApiKeyCreate, caller: AdminCaller, identity: IdentityDep
) -> ApiKeyCreated:
    return await identity.api_keys.create(body.name, body.role, caller.subject)


@router.get(
    "/v1/admin/api-keys",
    response_model=ApiKeyList,
    responses=responses(401, 403),
    tags=["admin"],
    summary="Every API key, revoked ones included (never the keys themselves)",
)
async def list_api_keys(caller: AdminCaller, identity: IdentityDep) -> ApiKeyList:
    return ApiKeyList(keys=await identity.api_keys.list())


@router.delete(
    "/v1/admin/api-keys/{key_id}",
    status_code=204,
    responses=responses(401, 403, 404, 422),
    tags=["admin"],
    summary="Revoke an API key: refused from the next request on",
)
async def revoke_api_key(key_id: KeyId, caller: AdminCaller, identity: IdentityDep) -> Response:
    await identity.api_keys.revoke(key_id)
    return Response(status_code=204)


async def _pair(identity: Identity, account_id: str, role: Role, refresh: str) -> TokenPair:
    issued = identity.tokens.issue(account_id, role)
    return TokenPair(access_token=issued.token, expires_in=issued.expires_in, refresh_token=refresh)


async def _login_allowed(request: Request, email: str) -> None:
    """Count this attempt against its client address, then its account (failed or not, and
    before any password is checked: the hash is the expensive part); 429 over either limit."""
    settings: Settings = request.state.settings
    limiter: RateLimiter = request.state.limiter
    for name, client, policy, whose in (
        ("login-ip", _client(request, settings), settings.login_ip_limit, "from this address"),
        ("login-account", _account(email), settings.login_account_limit, "for this account"),
    ):
        decision = await limiter.hit(name, client, policy=policy)
        if not decision.allowed:
            raise TooManyRequests(
                f"too many login attempts {whose} ({policy.limit} per {policy.window_s:g} s); "
                f"retry in {decision.retry_after_s} s",
                retry_after_s=decision.retry_after_s,
            )


def _account(email: str) -> str:
    """What an email's attempts are counted under (a digest: no address in a key name)."""
    return digest(email_key(email))[:32]


def _client(request: Request, settings: Settings) -> str:
    """The client address, as the rate-limit middleware derived it (or the same way)."""
    known = request.scope.get(CLIENT_SCOPE_KEY)
    if isinstance(known, str):
        return known
    peer = request.client.host if request.client else None
    forwarded = ",".join(request.headers.getlist("x-forwarded-for")) or None
    return client_address(peer, forwarded, settings.trusted_networks)
