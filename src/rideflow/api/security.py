"""Who may call what, declared in each route's signature by the caller it takes:

    async def cancel_ride(ride_id: RideId, caller: CustomerCaller, ...) -> ...

`AdminCaller`, `CustomerCaller` (CUSTOMER or ADMIN), `DriverCaller` (DRIVER or ADMIN) and
`AnyCaller` (any authenticated role). The caller comes from a bearer access token
(`Authorization: Bearer <jwt>`, the OAuth2 password flow of `/docs`) or a back end's API key
(`X-API-Key`); a route that takes no caller is public (health, docs, login). Each shows in the
OpenAPI document as a security requirement; `allowed_roles` reads them back for the role matrix.
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


def allow(*roles: Role) -> Check:
    """A dependency: the caller, when their role is one of `roles`; 401 without valid
    credentials, 403 with a role that may not call the route."""
    allowed = frozenset(roles)
    names = " or ".join(sorted(r.value for r in allowed))

    async def caller(
        request: Request,
        token: Annotated[str | None, Security(bearer)],
        key: Annotated[str | None, Security(api_key)],
    ) -> Principal:
        principal = await authenticate(request, token, key)
        if principal.role not in allowed:
            raise Forbidden(f"this route is for {names}; you are {principal.role.value}")
        return principal

    caller.roles = allowed  # type: ignore[attr-defined]
    return caller


def allowed_roles(route: Any) -> frozenset[Role] | None:
    """The roles a route admits (None: public), read from the caller it takes."""
    for dep in route.dependant.dependencies:
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return frozenset(roles)
    return None


AdminCaller = Annotated[Principal, Security(allow(Role.ADMIN))]
CustomerCaller = Annotated[Principal, Security(allow(Role.CUSTOMER, Role.ADMIN))]
DriverCaller = Annotated[Principal, Security(allow(Role.DRIVER, Role.ADMIN))]
AnyCaller = Annotated[Principal, Security(allow(Role.CUSTOMER, Role.DRIVER, Role.ADMIN))]
