"""The order state machine, pure: statuses, the groups they fall in, and the steps people make.
No I/O; every other module asks this one.

    QUEUED -> SEARCHING -> OFFERED -> ACCEPTED -> DRIVER_ARRIVING -> PICKED_UP -> COMPLETED
                                                                             (DELIVERED)

plus CANCELLED from any live state, NO_DRIVER_FOUND when no driver was found before the deadline,
and OFFERED -> SEARCHING when an offer is rejected, lapses or is withdrawn. Dispatchers move an
order up to OFFERED (Lua: order_begin, offer_create), the driver's answer to ACCEPTED
(offer_accept), the driver and the customer the rest (order_transition)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Kind = Literal["ride", "delivery"]
OrderStatus = Literal[
    "QUEUED",
    "SEARCHING",
    "OFFERED",
    "ACCEPTED",
    "DRIVER_ARRIVING",
    "PICKED_UP",
    "COMPLETED",
    "DELIVERED",
    "CANCELLED",
    "NO_DRIVER_FOUND",
]
STATUSES: tuple[str, ...] = get_args(OrderStatus)
LIVE = ("QUEUED", "SEARCHING", "OFFERED", "ACCEPTED", "DRIVER_ARRIVING", "PICKED_UP")
"""An order in one of these may still change."""
WAITING = ("QUEUED", "SEARCHING")
"""Waiting for a search: on the request stream or in the retry set."""
HOLDING = ("OFFERED", "ACCEPTED", "DRIVER_ARRIVING", "PICKED_UP")
"""The order holds its driver."""
ASSIGNED = ("ACCEPTED", "DRIVER_ARRIVING", "PICKED_UP", "COMPLETED", "DELIVERED")
"""A driver took the order (and may have finished it)."""
DONE = ("COMPLETED", "DELIVERED")
"""Driven to the end."""
FINAL = ("COMPLETED", "DELIVERED", "CANCELLED", "NO_DRIVER_FOUND")
"""No step leaves these."""
RETRYABLE = ("NO_DRIVER_FOUND", "CANCELLED")
"""Ended without a driver: the same merchant order may be tried again."""


@dataclass(frozen=True, slots=True)
class Step:
    """One move of the state machine that a person makes (not a dispatcher)."""

    target: OrderStatus
    sources: tuple[str, ...]
    final: bool
    by_driver: bool
    verb: str


STEPS: dict[str, Step] = {
    "arriving": Step("DRIVER_ARRIVING", ("ACCEPTED",), False, True, "marked arriving"),
    "picked-up": Step("PICKED_UP", ("DRIVER_ARRIVING",), False, True, "picked up"),
    "complete": Step("COMPLETED", ("PICKED_UP",), True, True, "completed"),
    "delivered": Step("DELIVERED", ("PICKED_UP",), True, True, "delivered"),
    "cancel": Step("CANCELLED", LIVE, True, False, "cancelled"),
}
KIND_STEPS: dict[Kind, tuple[str, ...]] = {
    "ride": ("arriving", "picked-up", "complete", "cancel"),
    "delivery": ("arriving", "picked-up", "delivered", "cancel"),
}


def illegal_step_text(kind: str, order_id: str, status: str, action: str) -> str:
    """Why a step is refused, as a person reads it."""
    step = STEPS[action]
    return (
        f"{kind} {order_id} is {status}; only a {kind} that is "
        f"{' or '.join(step.sources)} can be {step.verb}"
    )
