"""The batch assignment on hand-made matrices: optimal where greedy is not, infeasible pairs never
made, more orders than drivers and the reverse, deterministic ties."""

from __future__ import annotations

import itertools
import random

import pytest

from rideflow.dispatch.batch import assign, greedy, total_cost, zone_of


def test_beats_greedy_where_nearest_first_strands_the_second_order() -> None:
    # Order 0 is nearest to d1, but d1 is order 1's only driver within reach.
    candidates = [[("d1", 100.0), ("d2", 300.0)], [("d1", 200.0)]]
    assert greedy(candidates) == ["d1", None]
    result = assign(candidates)
    assert result.drivers == ["d2", "d1"]
    assert total_cost(candidates, result.drivers) == 500.0


def test_least_total_cost_among_full_assignments() -> None:
    candidates = [
        [("a", 100.0), ("b", 150.0)],
        [("a", 110.0), ("b", 400.0)],
    ]
    # Greedy: 0 takes a (100), 1 takes b (400) = 500; optimal: 0 b (150), 1 a (110) = 260.
    assert total_cost(candidates, greedy(candidates)) == 500.0
    result = assign(candidates)
    assert result.drivers == ["b", "a"]
    assert total_cost(candidates, result.drivers) == 260.0


def test_infeasible_pairs_are_never_made_even_to_pair_more_cheaply() -> None:
    # d2 is no candidate of order 1 (out of reach): order 1 gets nobody rather than d2.
    candidates = [[("d1", 500.0), ("d2", 900.0)], [("d1", 50.0)], [("d3", 10.0)]]
    result = assign(candidates)
    assert result.drivers == ["d2", "d1", "d3"]
    only_far = [[("d1", 10.0)], [("d1", 20.0)]]
    result = assign(only_far)
    assert result.drivers == ["d1", None]  # the cheaper pair; order 1 has no other edge
    assert result.fallbacks == [[], []]


def test_an_order_without_edges_and_an_empty_batch() -> None:
    assert assign([]).drivers == []
    result = assign([[], [("d1", 5.0)], []])
    assert result.drivers == [None, "d1", None]
    assert result.paired == 1


def test_more_pairs_win_over_a_cheaper_partial_assignment() -> None:
    # Cheapest single pair: 0-x (1 m); but that leaves order 1 without a driver. Two pairs
    # (0-y, 1-x) cost more in total and are preferred: nobody is left waiting who could go.
    candidates = [[("x", 1.0), ("y", 5_000.0)], [("x", 4_000.0)]]
    assert assign(candidates).drivers == ["y", "x"]


def test_more_orders_than_drivers_every_driver_used_once() -> None:
    rng = random.Random(7)
    drivers = [f"d{i}" for i in range(5)]
    candidates = [[(d, rng.uniform(100, 3000)) for d in rng.sample(drivers, 3)] for _ in range(12)]
    result = assign(candidates)
    paired = [d for d in result.drivers if d is not None]
    assert len(paired) == len(set(paired)) == 5
    assert total_cost(candidates, result.drivers) <= total_cost(candidates, greedy(candidates))


def test_more_drivers_than_orders_each_order_paired_at_the_least_cost() -> None:
    rng = random.Random(11)
    drivers = [f"d{i}" for i in range(9)]
    candidates = [[(d, rng.uniform(100, 3000)) for d in rng.sample(drivers, 6)] for _ in range(4)]
    result = assign(candidates)
    assert None not in result.drivers and len(set(result.drivers)) == 4
    best = min(
        sum(dict(c)[d] for c, d in zip(candidates, pick, strict=True))
        for pick in itertools.permutations(drivers, 4)
        if all(d in dict(c) for c, d in zip(candidates, pick, strict=True))
    )
    assert total_cost(candidates, result.drivers) == pytest.approx(best)


def test_ties_are_deterministic_whatever_order_the_edges_come_in() -> None:
    candidates = [[("b", 100.0), ("a", 100.0)], [("a", 100.0), ("b", 100.0)]]
    first = assign(candidates).drivers
    assert sorted(d for d in first if d) == ["a", "b"]
    swapped = [list(reversed(edges)) for edges in candidates]
    for _ in range(5):
        assert assign(candidates).drivers == first
        assert assign(swapped).drivers == first


def test_fallbacks_are_the_orders_other_candidates_not_assigned_elsewhere_cheapest_first() -> None:
    candidates = [
        [("a", 100.0), ("b", 200.0), ("c", 300.0), ("e", 250.0)],
        [("b", 50.0), ("c", 60.0)],
        [("d", 10.0)],
    ]
    result = assign(candidates)
    assert result.drivers == ["a", "b", "d"]
    assert result.fallbacks == [["e", "c"], ["c"], []]


def test_costs_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        assign([[("a", float("inf"))]])
    with pytest.raises(ValueError, match="not a candidate"):
        total_cost([[("a", 1.0)]], ["b"])


def test_zones_are_cells_of_about_the_size_asked() -> None:
    here = zone_of(12.9716, 77.5946, 5.0)
    north = zone_of(12.9716 + 5.5 / 110.574, 77.5946, 5.0)
    assert 1 <= north[0] - here[0] <= 2 and north[1] == here[1]  # 1.1 cells north
    east = zone_of(12.9716, 77.5946 + 10.5 / (111.32 * 0.9745), 5.0)
    assert east[0] == here[0] and 2 <= east[1] - here[1] <= 3  # 2.1 cells east
