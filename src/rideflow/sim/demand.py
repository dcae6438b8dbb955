"""The demand schedule: when and where customers ask for rides and food, from a seed. Pure: the
same seed and options give the same schedule, to the bit, on any machine.

Orders arrive as a Poisson process whose rate follows a day's curve squeezed into the run (a
morning and a larger evening peak over a base level; the curve averages 1, so `rate_per_min`
is the run's mean). Pickups come mostly from a few hot spots (a station, a market, offices),
the rest from anywhere in the area; trips are log-normally long (median 2.5 km). Food orders
are picked up at a restaurant near a hot spot and dropped 0.8-4 km away."""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from typing import Literal

from rideflow.sim.geo import LatLng, distance_m, offset, toward

HOT_SHARE = 0.7
"""Pickups drawn from a hot spot; the rest are anywhere in the area."""
TRIP_MEDIAN_M = 2_500.0
TRIP_SIGMA = 0.6
MIN_TRIP_M = 500.0
PEAKS = ((0.3, 0.08, 1.2), (0.75, 0.1, 1.6))
"""(where in the run, width, height over the base of 1) of each peak, as fractions of the run."""


@dataclass(frozen=True, slots=True)
class Area:
    """The simulated district: a disc around the city's centre."""

    center: LatLng
    radius_m: float

    def contains(self, p: LatLng) -> bool:
        return distance_m(self.center, p) <= self.radius_m


@dataclass(frozen=True, slots=True)
class HotSpot:
    at: LatLng
    sigma_m: float
    weight: float


@dataclass(frozen=True, slots=True)
class Request:
    """One order the simulation will place: `at_s` seconds after the start."""

    seq: int
    at_s: float
    kind: Literal["ride", "food"]
    customer: int
    pickup: LatLng
    dropoff: LatLng
    restaurant: int | None = None

    def json(self) -> dict[str, object]:
        return asdict(self) | {"pickup": self.pickup.json(), "dropoff": self.dropoff.json()}


def curve(u: float) -> float:
    """The demand level at fraction `u` of the run, before normalising (base 1 plus peaks)."""
    return 1.0 + sum(h * math.exp(-(((u - c) / w) ** 2) / 2) for c, w, h in PEAKS)


def _curve_mean(samples: int = 2_000) -> float:
    return sum(curve((i + 0.5) / samples) for i in range(samples)) / samples


CURVE_MEAN = _curve_mean()
CURVE_MAX = max(curve(i / 2_000) for i in range(2_001))


def hot_spots(seed: int, area: Area, count: int = 4) -> list[HotSpot]:
    rng = random.Random(f"{seed}:hotspots")
    return [
        HotSpot(
            _uniform_in(rng, area, 0.7),
            rng.uniform(300.0, 800.0),
            rng.uniform(1.0, 3.0),
        )
        for _ in range(count)
    ]


def restaurant_sites(seed: int, area: Area, count: int) -> list[LatLng]:
    """Where the simulation's restaurants stand: near the hot spots."""
    rng = random.Random(f"{seed}:restaurants")
    spots = hot_spots(seed, area)
    return [
        _clamped(area, _near(rng, spots[i % len(spots)].at, spots[i % len(spots)].sigma_m))
        for i in range(count)
    ]


def schedule(
    seed: int,
    area: Area,
    duration_s: float,
    rate_per_min: float,
    customers: int,
    food_share: float = 0.0,
    restaurants: int = 0,
) -> list[Request]:
    """Every order of a run, in time order."""
    rng = random.Random(f"{seed}:demand")
    spots = hot_spots(seed, area)
    sites = restaurant_sites(seed, area, restaurants)
    weights = [s.weight for s in spots]
    peak_per_s = rate_per_min / 60.0 * CURVE_MAX / CURVE_MEAN
    out: list[Request] = []
    t = 0.0
    while peak_per_s > 0:
        # Thinning (Lewis-Shedler): candidates at the peak rate, each kept with the curve's
        # share of the peak at its time.
        t += rng.expovariate(peak_per_s)
        if t >= duration_s:
            break
        if rng.random() * CURVE_MAX > curve(t / duration_s):
            continue
        customer = rng.randrange(customers)
        if sites and rng.random() < food_share:
            r = rng.randrange(len(sites))
            dropoff = _trip_end(rng, area, sites[r], rng.uniform(800.0, 4_000.0))
            out.append(Request(len(out), round(t, 3), "food", customer, sites[r], dropoff, r))
            continue
        if rng.random() < HOT_SHARE:
            spot = rng.choices(spots, weights)[0]
            pickup = _clamped(area, _near(rng, spot.at, spot.sigma_m))
        else:
            pickup = _uniform_in(rng, area, 1.0)
        length = max(MIN_TRIP_M, rng.lognormvariate(math.log(TRIP_MEDIAN_M), TRIP_SIGMA))
        out.append(
            Request(
                len(out),
                round(t, 3),
                "ride",
                customer,
                pickup,
                _trip_end(rng, area, pickup, length),
            )
        )
    return out


def digest(requests: list[Request]) -> str:
    """A fingerprint of a schedule: equal schedules, equal digests."""
    text = json.dumps([r.json() for r in requests], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _uniform_in(rng: random.Random, area: Area, share: float) -> LatLng:
    r = area.radius_m * share * math.sqrt(rng.random())
    a = rng.uniform(0.0, 2 * math.pi)
    return _rounded(offset(area.center, r * math.cos(a), r * math.sin(a)))


def _near(rng: random.Random, at: LatLng, sigma_m: float) -> LatLng:
    return _rounded(offset(at, rng.gauss(0.0, sigma_m), rng.gauss(0.0, sigma_m)))


def _trip_end(rng: random.Random, area: Area, start: LatLng, length_m: float) -> LatLng:
    """A point `length_m` from `start` in a random direction that stays in the area (turning
    toward the centre when the first tries fall outside)."""
    for _ in range(8):
        a = rng.uniform(0.0, 2 * math.pi)
        end = _rounded(offset(start, length_m * math.cos(a), length_m * math.sin(a)))
        if area.contains(end):
            return end
    return _rounded(toward(start, area.center, length_m))


def _clamped(area: Area, p: LatLng) -> LatLng:
    """`p`, or the nearest point of the area's edge when it falls outside."""
    d = distance_m(area.center, p)
    if d <= area.radius_m:
        return p
    f = area.radius_m * 0.98 / d
    c = area.center
    return _rounded(LatLng(c.lat + (p.lat - c.lat) * f, c.lng + (p.lng - c.lng) * f))


def _rounded(p: LatLng) -> LatLng:
    # Six decimals (~0.1 m) as sent in the JSON bodies, so the schedule is exactly what is sent.
    return LatLng(round(p.lat, 6), round(p.lng, 6))
