"""Ranking candidates by strategy. Pure logic: no Redis, no web framework."""

from __future__ import annotations

from dataclasses import dataclass

# Below this a driver is waiting, not driving: their speed says nothing about an ETA.
MOVING_MPS = 1.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A driver found near a pickup, with what the strategies rank on when it is known."""

    driver_id: str
    distance_m: float
    rating: float | None = None
    speed_mps: float | None = None


def eta_s(candidate: Candidate, default_speed_mps: float) -> float:
    """Seconds to the pickup: the distance over the driver's recent speed, or over the city's
    speed when the driver's is unknown or they are standing still."""
    speed = candidate.speed_mps
    if speed is None or speed < MOVING_MPS:
        speed = default_speed_mps
    return candidate.distance_m / speed


def rank(strategy: str, candidates: list[Candidate], default_speed_mps: float) -> list[Candidate]:
    """Best first. `nearest`: distance; `rating`: best rating, then distance; `eta`: shortest
    estimated time to the pickup, then distance; `batch` one order at a time (the synchronous
    assignment, and an order its batch could not place) as `nearest`. The driver id breaks any
    remaining tie, so that ranking is deterministic."""
    if strategy == "rating":
        return sorted(candidates, key=lambda c: (-(c.rating or 0.0), c.distance_m, c.driver_id))
    if strategy == "eta":
        return sorted(
            candidates, key=lambda c: (eta_s(c, default_speed_mps), c.distance_m, c.driver_id)
        )
    return sorted(candidates, key=lambda c: (c.distance_m, c.driver_id))


def needs_profiles(strategy: str) -> bool:
    """Whether ranking needs the drivers' ratings and speeds (one more read)."""
    return strategy in ("rating", "eta")
