"""How error responses appear in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    text = {
        404: "Unknown id",
        409: "Conflicts with the current state",
        413: "Body too large",
        422: "Invalid input, with the field and the reason",
        429: "Rate limited",
        503: "Redis unreachable",
    }
    return {
        s: {"model": Problem, "description": text[s], "content": {"application/problem+json": {}}}
        for s in (*statuses, 429, 503)
    }
