"""The run's figures, from each order's recorded transitions (server timestamps) and the
drivers' own counts. Pure."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FINAL = ("COMPLETED", "DELIVERED", "CANCELLED", "NO_DRIVER_FOUND")


@dataclass(frozen=True, slots=True)
class OrderFigures:
    """One order's path through dispatch, read from its events."""

    final: str | None
    """Its final status, or None when it is still live."""
    offers: int
    first_offer_ms: float | None
    """From QUEUED to the first OFFERED."""
    accept_ms: float | None
    """From QUEUED to ACCEPTED."""
    pickup_m: float | None
    """The accepted driver's distance to the pickup when offered."""


def figures(events: Sequence[dict[str, Any]]) -> OrderFigures:
    """What an order's events say (as `GET …/events` gives them, in order)."""
    at = {e["status"]: _time(e["at"]) for e in reversed(events)}  # the first of each status
    queued = at.get("QUEUED")
    offered = [e for e in events if e["status"] == "OFFERED"]
    accepted = next((e for e in events if e["status"] == "ACCEPTED"), None)
    pickup = None
    if accepted is not None:
        pickup = accepted.get("pickup_distance_m")
        if pickup is None:
            same = [e for e in offered if e.get("offer_id") == accepted.get("offer_id")]
            pickup = (same or offered or [{}])[-1].get("pickup_distance_m")
    last = events[-1]["status"] if events else None

    def ms(status: str) -> float | None:
        if queued is None or status not in at:
            return None
        return (at[status] - queued).total_seconds() * 1000

    return OrderFigures(
        final=last if last in FINAL else None,
        offers=len(offered),
        first_offer_ms=ms("OFFERED"),
        accept_ms=ms("ACCEPTED"),
        pickup_m=float(pickup) if pickup is not None else None,
    )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100), nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    xs = [v for v in values if v is not None]
    return {
        "n": len(xs),
        "p50": _r(percentile(xs, 50)),
        "p95": _r(percentile(xs, 95)),
        "mean": _r(sum(xs) / len(xs)) if xs else None,
    }


def build(
    meta: dict[str, Any],
    orders: Sequence[OrderFigures],
    drivers: dict[str, int],
    online_s: float,
    busy_s: float,
) -> dict[str, Any]:
    """The report: `meta` (the run's options and counts) plus the figures."""
    n = len(orders)
    finals = Counter(o.final or "LIVE" for o in orders)
    matched = sum(1 for o in orders if o.accept_ms is not None)
    return {
        **meta,
        "orders": n,
        "final": dict(sorted(finals.items())),
        "match_rate": _r(matched / n, 3) if n else None,
        "no_driver_found_rate": _r(finals["NO_DRIVER_FOUND"] / n, 3) if n else None,
        "time_to_first_offer_ms": spread(o.first_offer_ms for o in orders),
        "time_to_accept_ms": spread(o.accept_ms for o in orders),
        "pickup_distance_m": spread(o.pickup_m for o in orders),
        "offers_per_order": {
            "mean": _r(sum(o.offers for o in orders) / n, 2) if n else None,
            "max": max((o.offers for o in orders), default=0),
        },
        "driver_answers": drivers,
        "driver_utilisation": _r(busy_s / online_s, 3) if online_s > 0 else None,
    }


def _ms(s: dict[str, Any], unit: str = "ms") -> str:
    if not s["n"]:
        return "n/a"
    if unit == "ms":
        return f"p50 {s['p50'] / 1000:.2f} s, p95 {s['p95'] / 1000:.2f} s"
    return f"mean {s['mean']:.0f} m, p95 {s['p95']:.0f} m"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"


def text(report: dict[str, Any]) -> str:
    """The report as a person reads it."""
    r = report
    finals = ", ".join(f"{k} {v}" for k, v in r["final"].items()) or "none"
    answers = ", ".join(f"{k} {v}" for k, v in r["driver_answers"].items())
    lines = [
        f"simulation {r['run_id']}: city {r['city']}, seed {r['seed']}, strategy "
        f"{r['strategy'] or 'the city default'}, {r['drivers']} drivers, {r['customers']} "
        f"customers, {r['rate_per_min']:g} orders/min for {r['duration_s']:g} s "
        f"(x{r['time_scale']:g} time)",
        f"demand: {r['demand']['orders']} orders ({r['demand']['rides']} rides, "
        f"{r['demand']['food']} food), digest {r['demand']['digest'][:16]}",
        f"orders placed {r['orders']}, refused {sum(r['refused'].values())}; final: {finals}"
        + (
            f" ({r['cancelled_at_end']} cancelled by the simulation at the end)"
            if r["cancelled_at_end"]
            else ""
        ),
        f"match rate {_pct(r['match_rate'])}, NO_DRIVER_FOUND {_pct(r['no_driver_found_rate'])}",
        f"time to first offer {_ms(r['time_to_first_offer_ms'])}; "
        f"to acceptance {_ms(r['time_to_accept_ms'])}",
        f"pickup distance {_ms(r['pickup_distance_m'], 'm')}",
        f"offers per order {r['offers_per_order']['mean']} (max {r['offers_per_order']['max']})",
        f"drivers' answers: {answers}",
        f"driver utilisation {_pct(r['driver_utilisation'])} of online time on a trip",
    ]
    for problem in r.get("problems", []):
        lines.append(f"problem: {problem}")
    return "\n".join(lines)
