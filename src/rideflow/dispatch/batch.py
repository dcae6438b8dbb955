"""Batch matching, the pure part: orders collected over a short window are assigned to drivers
all at once, minimising the total cost (pickup distance or ETA) instead of giving each order, in
arrival order, the driver nearest to it. No Redis here: the dispatcher gathers each order's K
nearest available drivers, this module picks the assignment, and the dispatcher reserves it.

Only the edges given are feasible: an order and a driver with no edge between them (out of reach,
excluded, beyond the K nearest) are never paired, whatever else the assignment gains. Among all
assignments the one with the most pairs wins, and among those the cheapest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

Edges = Sequence[tuple[str, float]]
"""One order's candidate drivers: (driver id, cost), any order; a driver at most once."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """Per order, in the order given: the driver it is assigned (None: none could be), and the
    drivers to try when that one is taken meanwhile (its other candidates that no other order
    of the batch was assigned, cheapest first)."""

    drivers: list[str | None]
    fallbacks: list[list[str]]

    @property
    def paired(self) -> int:
        """How many orders were given a driver."""
        return sum(d is not None for d in self.drivers)


def assign(candidates: Sequence[Edges]) -> Assignment:
    """The cheapest assignment with the most pairs of orders (`candidates[i]` are order i's
    edges) to distinct drivers, by `scipy.optimize.linear_sum_assignment`.

    Deterministic: drivers are columns sorted by id and orders rows in the order given, so the
    same edges give the same answer, whatever order each order's edges come in; among equally
    cheap assignments the solver's pick is a function of that matrix alone.
    """
    columns = sorted({driver for edges in candidates for driver, _ in edges})
    assigned: list[str | None] = [None] * len(candidates)
    if columns:
        index = {driver: j for j, driver in enumerate(columns)}
        finite = [cost for edges in candidates for _, cost in edges]
        if any(not math.isfinite(c) or c < 0 for c in finite):
            raise ValueError("edge costs must be finite and non-negative")
        # Any one pair more is worth more than every feasible cost together: maximum
        # cardinality first, then the least cost (a missing edge is never chosen over a real
        # one, and a pair on a missing edge is dropped below).
        infeasible = (max(finite) + 1.0) * (min(len(candidates), len(columns)) + 1)
        matrix = np.full((len(candidates), len(columns)), infeasible)
        for i, edges in enumerate(candidates):
            for driver, cost in edges:
                matrix[i, index[driver]] = cost
        rows, cols = linear_sum_assignment(matrix)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            if matrix[i, j] < infeasible:
                assigned[i] = columns[j]
    taken = {d for d in assigned if d is not None}
    fallbacks = [
        [d for d, _ in sorted(edges, key=lambda e: (e[1], e[0])) if d not in taken]
        for edges in candidates
    ]
    return Assignment(assigned, fallbacks)


def total_cost(candidates: Sequence[Edges], drivers: Sequence[str | None]) -> float:
    """The cost of an assignment (`drivers[i]` for order i); pairs on no edge are refused."""
    total = 0.0
    for edges, driver in zip(candidates, drivers, strict=True):
        if driver is None:
            continue
        costs = dict(edges)
        if driver not in costs:
            raise ValueError(f"driver {driver} is not a candidate of that order")
        total += costs[driver]
    return total


def greedy(candidates: Sequence[Edges]) -> list[str | None]:
    """What nearest-first does, for comparison: each order in turn takes its cheapest driver
    not yet taken (ties by driver id)."""
    taken: set[str] = set()
    out: list[str | None] = []
    for edges in candidates:
        pick = next(
            (d for d, _ in sorted(edges, key=lambda e: (e[1], e[0])) if d not in taken), None
        )
        if pick is not None:
            taken.add(pick)
        out.append(pick)
    return out


def zone_of(lat: float, lng: float, zone_km: float) -> tuple[int, int]:
    """The square cell of side about `zone_km` that holds a point: orders are batched per cell,
    so that one solve stays small however busy the city."""
    cell_lat = zone_km / 110.574
    cell_lng = zone_km / (111.320 * max(math.cos(math.radians(lat)), 0.01))
    return math.floor(lat / cell_lat), math.floor(lng / cell_lng)
