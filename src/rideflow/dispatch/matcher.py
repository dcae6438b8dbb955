"""Ranking candidates. Pure logic: no Redis, no web framework."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """A driver found near a pickup."""

    driver_id: str
    distance_m: float


def rank_nearest(candidates: list[Candidate]) -> list[Candidate]:
    """Nearest first; the driver id breaks ties so that ranking is deterministic."""
    return sorted(candidates, key=lambda c: (c.distance_m, c.driver_id))
