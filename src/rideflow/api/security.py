"""Who may call what, declared in each route's signature by the caller it takes:

    async def cancel_ride(ride_id: RideId, caller: CustomerCaller, ...) -> ...

`AdminCaller`, `CustomerCaller` (CUSTOMER or ADMIN), `DriverCaller` (DRIVER or ADMIN),
`AnyCaller` (any authenticated role), and for back ends `MerchantCaller` / `FleetCaller` (ADMIN,
or an API key with role CUSTOMER / DRIVER; not an account of that role). The caller comes from a
bearer access token (`Authorization: Bearer <jwt>`, the OAuth2 password flow of `/docs`) or a back
end's API key (`X-API-Key`, or as the bearer token); a route that takes no caller is public
(health, docs, login). Each shows in the OpenAPI document as a security requirement;
`allowed_roles` and `key_only_roles` read them back (the role matrix, the README's table:
`python -m rideflow.api.access`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Request, Security
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowPassword, OAuthFlows
from fastapi.security.base import SecurityBase

from rideflow.auth.apikeys import KEY_PREFIX
from rideflow.auth.principal import Principal, Role
from rideflow.auth.tokens import AccessTokens
from rideflow.errors import Forbidden, Unauthorized

TOKEN_URL = "/v1/auth/token"
API_KEY_HEADER = "X-API-Key"
PRINCIPAL = "rideflow.principal"
"""Where the request's verified caller is kept (ASGI scope), so it is verified once."""
API_KEY_SCHEME = {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
"""The second way in, which the OpenAPI document lists beside the access token (`problems`)."""


async def authenticate(request: Request, token: str | None, key: str | None) -> Principal:
    """The caller of this request; `Unauthorized` without valid credentials."""
    known = request.scope.get(PRINCIPAL)
    if isinstance(known, Principal):
        return known
    if token and not key and token.startswith(KEY_PREFIX):
        # A back end's key as a bearer token: what a scraper that sends only `Authorization`
        # can present (Prometheus' `authorization: credentials_file`).
        token, key = None, token
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
            f"(POST {TOKEN_URL}) or an `{API_KEY_HEADER}`"
        )
    request.scope[PRINCIPAL] = principal
    return principal


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class RoleCheck(SecurityBase):
    """A route's caller, when their role is one of `roles`, or one of `keys_only` as a back end
    with an API key (an account of that role is refused); 401 without valid credentials, 403
    with a role that may not call the route.

    One dependency that reads both headers itself: FastAPI resolves each dependency of a route
    on every request, and the two security schemes as dependencies of their own cost more than
    verifying the token. It is the access token's scheme for OpenAPI (the password flow of
    `/docs`); the API key is added to each guarded operation there."""

    def __init__(self, *roles: Role, keys_only: tuple[Role, ...] = ()) -> None:
        self.model = OAuth2Model(flows=OAuthFlows(password=OAuthFlowPassword(tokenUrl=TOKEN_URL)))
        self.scheme_name = "AccessToken"
        self.roles = frozenset(roles) | frozenset(keys_only)
        self.keys_only = frozenset(keys_only) - frozenset(roles)
        names = " or ".join(sorted(r.value for r in roles))
        names += "".join(f" or a {r.value} back end (API key)" for r in sorted(self.keys_only))
        self.names = names

    async def __call__(self, request: Request) -> Principal:
        headers = request.headers
        principal = await authenticate(
            request, bearer_token(headers.get("authorization")), headers.get(API_KEY_HEADER)
        )
        if principal.role not in self.roles or (
            principal.role in self.keys_only and not principal.service
        ):
            kind = "back end" if principal.service else "account"
            raise Forbidden(
                f"this route is for {self.names}; you are a {principal.role.value} {kind}"
            )
        return principal


def allow(*roles: Role, keys_only: tuple[Role, ...] = ()) -> RoleCheck:
    """The dependency admitting `roles` (and `keys_only` from back ends)."""
    return RoleCheck(*roles, keys_only=keys_only)


def _check_of(route: Any) -> RoleCheck | None:
    for dep in route.dependant.dependencies:
        if isinstance(dep.call, RoleCheck):
            return dep.call
    check = getattr(route.endpoint, "role_check", None)
    return check if isinstance(check, RoleCheck) else None


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def checks_inside(check: RoleCheck) -> Callable[[Endpoint], Endpoint]:
    """Marks an endpoint that calls `await check(request)` itself instead of taking its caller
    as a dependency: the hottest route does, because FastAPI's resolving of one dependency
    costs a request more than the check (profiled: tens of microseconds). The mark is what
    `allowed_roles` reads; give the route `openapi_extra=SECURED` for its documentation."""

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.role_check = check  # type: ignore[attr-defined]
        return endpoint

    return mark


SECURED: dict[str, Any] = {"security": [{"AccessToken": []}]}
"""The OpenAPI security of a route that checks its caller inside (`problems` adds the API key)."""


def allowed_roles(route: Any) -> frozenset[Role] | None:
    """The roles a route admits (None: public), read from the caller it takes."""
    check = _check_of(route)
    return None if check is None else frozenset(check.roles)


def key_only_roles(route: Any) -> frozenset[Role]:
    """The roles a route admits only from back ends with an API key."""
    check = _check_of(route)
    return frozenset() if check is None else frozenset(check.keys_only)


CUSTOMER_CHECK = allow(Role.CUSTOMER, Role.ADMIN)
AdminCaller = Annotated[Principal, Security(allow(Role.ADMIN))]
CustomerCaller = Annotated[Principal, Security(CUSTOMER_CHECK)]
DriverCaller = Annotated[Principal, Security(allow(Role.DRIVER, Role.ADMIN))]
AnyCaller = Annotated[Principal, Security(allow(Role.CUSTOMER, Role.DRIVER, Role.ADMIN))]
MerchantCaller = Annotated[Principal, Security(allow(Role.ADMIN, keys_only=(Role.CUSTOMER,)))]
"""ADMIN, or a merchant's back end: an API key with role CUSTOMER (the assignment contract)."""
FleetCaller = Annotated[Principal, Security(allow(Role.ADMIN, keys_only=(Role.DRIVER,)))]
"""ADMIN, or a fleet gateway: an API key with role DRIVER (many drivers' positions at once)."""
