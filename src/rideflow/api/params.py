"""Query parameters several routes share, checked here so no bad value reaches Redis."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator

U64_MAX = 2**64 - 1


def _event_id(value: str) -> str:
    ms, seq = (int(part) for part in value.split("-"))
    # Redis refuses a part past 64 bits, and "after the greatest id" names no interval at all.
    if ms > U64_MAX or seq > U64_MAX or (ms, seq) == (U64_MAX, U64_MAX):
        raise ValueError(f"an event id is <ms>-<seq>, each part below {U64_MAX}")
    return value


EventAfter = Annotated[
    str | None,
    Query(
        pattern=r"^\d{1,20}-\d{1,20}$",
        description="Last event id seen (`<ms>-<seq>`, as events carry it)",
    ),
    AfterValidator(lambda v: None if v is None else _event_id(v)),
]
