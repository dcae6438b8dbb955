"""Who may call what, as a Markdown table read from the routes themselves (the caller each takes):
`python -m rideflow.api.access` prints the README's table, and a test keeps the two equal."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from rideflow.api.security import allowed_roles, key_only_roles
from rideflow.auth.principal import Role

ORDER = (Role.CUSTOMER, Role.DRIVER, Role.ADMIN)


def rows(app: FastAPI) -> list[tuple[str, str]]:
    """(`METHOD path`, who) for every documented route, in the document's order."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        roles, keys = allowed_roles(route), key_only_roles(route)
        who = "anyone" if roles is None else ", ".join(_name(r, keys) for r in ORDER if r in roles)
        for method in sorted(context.methods or ()):
            found.append((f"`{method} {context.path}`", who))
    return found


def _name(role: Role, keys_only: frozenset[Role]) -> str:
    return f"{role.value} (API key only)" if role in keys_only else role.value


def table(app: FastAPI) -> str:
    lines = ["| route | callers (roles) |", "|---|---|"]
    lines += [f"| {route} | {who} |" for route, who in rows(app)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    from rideflow.api.app import create_app
    from rideflow.config import Settings

    print(table(create_app(Settings())), end="")
