"""The order state machine as a table: every step, every status, no Redis."""

from __future__ import annotations

import pytest

from rideflow.orders.states import (
    ASSIGNED,
    DONE,
    FINAL,
    HOLDING,
    KIND_STEPS,
    LIVE,
    RETRYABLE,
    STATUSES,
    STEPS,
    WAITING,
    illegal_step_text,
)

# The whole table of steps people make, written out: action -> (target, the statuses it leaves).
TABLE = {
    "arriving": ("DRIVER_ARRIVING", {"ACCEPTED"}),
    "picked-up": ("PICKED_UP", {"DRIVER_ARRIVING"}),
    "complete": ("COMPLETED", {"PICKED_UP"}),
    "delivered": ("DELIVERED", {"PICKED_UP"}),
    "cancel": (
        "CANCELLED",
        {"QUEUED", "SEARCHING", "OFFERED", "ACCEPTED", "DRIVER_ARRIVING", "PICKED_UP"},
    ),
}


def test_the_steps_are_exactly_the_table() -> None:
    assert {a: (s.target, set(s.sources)) for a, s in STEPS.items()} == TABLE


def test_no_step_leaves_a_final_status() -> None:
    for action in STEPS:
        assert not set(STEPS[action].sources) & set(FINAL), action


def test_every_step_goes_from_a_live_status_to_a_known_one() -> None:
    for action, step in STEPS.items():
        assert set(step.sources) <= set(LIVE), action
        assert step.target in STATUSES and step.target not in step.sources, action
        assert step.final is (step.target in FINAL), action


def test_the_groups_partition_the_statuses_sensibly() -> None:
    assert len(set(STATUSES)) == len(STATUSES) == 10
    assert set(LIVE) | set(FINAL) == set(STATUSES)
    assert not set(LIVE) & set(FINAL)
    assert set(WAITING) | set(HOLDING) == set(LIVE)
    assert not set(WAITING) & set(HOLDING)
    assert set(ASSIGNED) == (set(HOLDING) - {"OFFERED"}) | set(DONE)
    assert set(DONE) <= set(FINAL) and set(RETRYABLE) <= set(FINAL)
    assert set(DONE) | set(RETRYABLE) == set(FINAL) and not set(DONE) & set(RETRYABLE)


@pytest.mark.parametrize(("kind", "last"), [("ride", "COMPLETED"), ("delivery", "DELIVERED")])
def test_each_kind_walks_from_accepted_to_its_own_end(kind: str, last: str) -> None:
    steps = KIND_STEPS[kind]  # type: ignore[index]
    assert steps[-1] == "cancel" and len(set(steps)) == len(steps)
    status = "ACCEPTED"
    for action in steps[:-1]:
        assert status in STEPS[action].sources, (status, action)
        assert STEPS[action].by_driver
        status = STEPS[action].target
    assert status == last and status in FINAL
    assert not STEPS["cancel"].by_driver  # the customer's step


def test_a_refused_step_says_which_statuses_allow_it() -> None:
    assert illegal_step_text("ride", "blr-1", "QUEUED", "picked-up") == (
        "ride blr-1 is QUEUED; only a ride that is DRIVER_ARRIVING can be picked up"
    )
    assert illegal_step_text("delivery", "blr-2", "COMPLETED", "cancel").startswith(
        "delivery blr-2 is COMPLETED; only a delivery that is QUEUED or SEARCHING or OFFERED"
    )
