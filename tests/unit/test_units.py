"""Pure logic: cities, ranking, settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rideflow.cities import CityMap, distance_m
from rideflow.config import City, Settings
from rideflow.dispatch.matcher import Candidate, eta_s, rank
from rideflow.redis import keys

BLR = City(code="blr", name="Bengaluru", lat=12.9716, lng=77.5946, radius_km=30)
MYS = City(code="mys", name="Mysuru", lat=12.2958, lng=76.6394, radius_km=20)


def test_distance_is_haversine() -> None:
    assert distance_m(12.9716, 77.5946, 12.9716, 77.5946) == 0
    # One degree of latitude is about 111.2 km.
    assert distance_m(12.0, 77.0, 13.0, 77.0) == pytest.approx(111_195, rel=1e-3)


def test_locate_picks_the_area_holding_the_point() -> None:
    cities = CityMap([BLR, MYS])
    assert cities.locate(12.97, 77.59) is BLR
    assert cities.locate(12.30, 76.64) is MYS
    assert cities.locate(40.0, -74.0) is None
    assert cities.locate(12.9716, 77.5946 + 0.30) is None  # ~32 km east: outside


def test_overlapping_areas_go_to_the_nearest_centre() -> None:
    big = City(code="big", name="Big", lat=12.5, lng=77.0, radius_km=200)
    cities = CityMap([big, BLR])
    assert cities.locate(12.97, 77.59) is BLR


def ids(found: list[Candidate]) -> list[str]:
    return [c.driver_id for c in found]


def test_rank_nearest_breaks_ties_by_id() -> None:
    found = [Candidate("b", 50.0), Candidate("a", 50.0), Candidate("c", 10.0)]
    assert ids(rank("nearest", found, 5.0)) == ["c", "a", "b"]


def test_rank_rating_prefers_the_best_rated_then_the_nearest() -> None:
    found = [
        Candidate("near", 100, rating=4.2),
        Candidate("star", 900, rating=4.9),
        Candidate("star2", 400, rating=4.9),
        Candidate("new", 50, rating=None),
    ]
    assert ids(rank("rating", found, 5.0)) == ["star2", "star", "near", "new"]


def test_rank_eta_uses_each_drivers_speed_or_the_citys() -> None:
    found = [
        Candidate("slow", 500, speed_mps=2.0),  # 250 s
        Candidate("fast", 1500, speed_mps=15.0),  # 100 s
        Candidate("parked", 600, speed_mps=0.0),  # standing: city speed, 120 s
        Candidate("unknown", 700),
    ]  # city speed, 140 s
    assert ids(rank("eta", found, 5.0)) == ["fast", "parked", "unknown", "slow"]
    assert ids(rank("batch", found, 5.0)) == ids(rank("nearest", found, 5.0))
    assert eta_s(found[1], 5.0) == 100


def test_city_keys_share_one_hash_tag() -> None:
    city_keys = [
        keys.requests("blr"),
        keys.pool("blr"),
        keys.seen("blr"),
        keys.retries("blr"),
        keys.order("blr", "r1"),
        keys.order_events("blr", "r1"),
        keys.excluded("blr", "r1"),
        keys.city_events("blr"),
        keys.offer("blr", "o1"),
        keys.offers_due("blr"),
        keys.lease("blr", "d1"),
        keys.fence("blr"),
        keys.driver("blr", "d1"),
        keys.idempotency("blr", "u", "k"),
    ]
    assert all("{blr}" in k for k in city_keys)
    assert len(set(city_keys)) == len(city_keys)


@pytest.mark.parametrize(
    "overrides",
    [
        {"search_radii_km": [2.0, 1.0]},
        {"search_radii_km": []},
        {"cities": []},
        {"rate_routes": [{"path": "/v1/rides", "policy": "nope"}]},
        {"trusted_proxies": ["not-a-network"]},
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)  # type: ignore[arg-type]
