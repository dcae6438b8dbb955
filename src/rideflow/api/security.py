"""Who may call what, declared in each route's signature by the caller it takes:

    async def cancel_ride(ride_id: RideId, caller: CustomerCaller, ...) -> ...

`AdminCaller`, `CustomerCaller` (CUSTOMER or ADMIN), `DriverCaller` (DRIVER or ADMIN),
`AnyCaller` (any authenticated role), and for back ends `MerchantCaller` / `FleetCaller` (ADMIN,
or an API key with role CUSTOMER / DRIVER; not an account of that role). The caller comes from a
bearer access token (`Authorization: Bearer <jwt>`, the OAuth2 password flow of `/docs`) or a back
end's API key (`X-API-Key`); a route that takes no caller is public (health, docs, login). Each
shows in the OpenAPI document as a security requirement; `allowed_roles` and `key_only_roles` read
them back (the role matrix, the README's table: `python -m rideflow.api.access`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from rideflow.auth.principal import Principal, Role
from rideflow.auth.tokens import AccessTokens
from rideflow.errors import Forbidden, Unauthorized

TOKEN_URL = "/v1/auth/token"
bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False, scheme_name="AccessToken")
api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
PRINCIPAL = "rideflow.principal"
"""Where the request's verified caller is kept (ASGI scope), so it is verified once."""


async def authenticate(request: Request, token: str | None, key: str | None) -> Principal:
    """The caller of this request; `Unauthorized` without valid credentials."""
    known = request.scope.get(PRINCIPAL)
    if isinstance(known, Principal):
        return known
    if token:
        tokens: AccessTokens = request.state.tokens
        principal = tokens.verify(token)
    elif key:
        verify_key = getattr(request.state, "api_keys", None)
        found = await verify_key.verify(key) if verify_key is not None else None
        if found is None:
            raise Unauthorized("the API key is not valid (unknown or revoked)")
        principal = found
    else:
        raise Unauthorized(
            "this route needs credentials: `Authorization: Bearer <access token>` "
            f"(POST {TOKEN_URL}) or an `X-API-Key`"
        )
    request.scope[PRINCIPAL] = principal
    return principal


Check = Callable[..., Awaitable[Principal]]


def allow(*roles: Role, keys_only: tuple[Role, ...] = ()) -> Check:
    """A dependency: the caller, when their role is one of `roles`, or one of `keys_only` as a
    back end with an API key (an account of that role is refused); 401 without valid
    credentials, 403 with a role that may not call the route."""
    allowed = frozenset(roles) | frozenset(keys_only)
    services = frozenset(keys_only) - frozenset(roles)
    names = " or ".join(sorted(r.value for r in roles))
    names += "".join(f" or a {r.value} back end (API key)" for r in sorted(services))

    async def caller(
        request: Request,
        token: Annotated[str | None, Security(bearer)],
        key: Annotated[str | None, Security(api_key)],
    ) -> Principal:
        principal = await authenticate(request, token, key)
        if principal.role not in allowed or (principal.role in services and not principal.service):
            kind = "back end" if principal.service else "account"
            raise Forbidden(f"this route is for {names}; you are a {principal.role.value} {kind}")
        return principal

    caller.roles = allowed  # type: ignore[attr-defined]
    caller.keys_only = services  # type: ignore[attr-defined]
    return caller


def _check_of(route: Any) -> Any:
    for dep in route.dependant.dependencies:
        if getattr(dep.call, "roles", None) is not None:
            return dep.call
    return None


def allowed_roles(route: Any) -> frozenset[Role] | None:
    """The roles a route admits (None: public), read from the caller it takes."""
    check = _check_of(route)
    return None if check is None else frozenset(check.roles)


def key_only_roles(route: Any) -> frozenset[Role]:
    """The roles a route admits only from back ends with an API key."""
    check = _check_of(route)
    return frozenset() if check is None else frozenset(check.keys_only)


AdminCaller = Annotated[Principal, Security(allow(Role.ADMIN))]
CustomerCaller = Annotated[Principal, Security(allow(Role.CUSTOMER, Role.ADMIN))]
DriverCaller = Annotated[Principal, Security(allow(Role.DRIVER, Role.ADMIN))]
AnyCaller = Annotated[Principal, Security(allow(Role.CUSTOMER, Role.DRIVER, Role.ADMIN))]
MerchantCaller = Annotated[Principal, Security(allow(Role.ADMIN, keys_only=(Role.CUSTOMER,)))]
"""ADMIN, or a merchant's back end: an API key with role CUSTOMER (the assignment contract)."""
FleetCaller = Annotated[Principal, Security(allow(Role.ADMIN, keys_only=(Role.DRIVER,)))]
"""ADMIN, or a fleet gateway: an API key with role DRIVER (many drivers' positions at once)."""
