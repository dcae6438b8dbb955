"""Settings: values derived from the fields, and the environment variables they are read from."""

from __future__ import annotations

import logging

import pytest

from rideflow.config import City, Settings
from tests.conftest import env_of, settings_for

MYS = City(code="mys", name="Mysuru", lat=12.2958, lng=76.6394, radius_km=20, speed_kmh=36)


def test_derived_values() -> None:
    s = Settings(
        driver_stale_s=12.5,
        ride_deadline_s=90.0,
        delivery_deadline_s=0.25,
        ride_offer_window_s=15.0,
        delivery_offer_window_s=29.9,
        retry_base_s=0.1,
        retry_max_s=8.0,
        job_retry_base_s=1.5,
        job_retry_max_s=60.0,
        search_radii_km=[0.5, 1.0, 3.5],
        trusted_proxies=["10.0.0.0/8", "127.0.0.1"],
    )
    assert s.stale_ms == 12_500
    assert (s.deadline_ms("ride"), s.deadline_ms("delivery")) == (90_000, 250)
    assert (s.offer_window_ms("ride"), s.offer_window_ms("delivery")) == (15_000, 29_900)
    assert (s.retry_base_ms, s.retry_max_ms) == (100, 8_000)
    assert (s.job_retry_base_ms, s.job_retry_max_ms) == (1_500, 60_000)
    assert s.search_radii_m == [500.0, 1_000.0, 3_500.0]
    assert [str(n) for n in s.trusted_networks] == ["10.0.0.0/8", "127.0.0.1/32"]


def test_each_city_has_its_speed_in_metres_per_second() -> None:
    speeds = Settings(cities=[City(code="blr", name="B", lat=1, lng=1, radius_km=5), MYS])
    assert speeds.city_speed_mps == pytest.approx({"blr": 20 / 3.6, "mys": 10.0})


def test_the_environment_sets_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIDEFLOW_RIDE_DEADLINE_S", "42")
    monkeypatch.setenv("RIDEFLOW_SEARCH_RADII_KM", "[1, 4]")
    s = Settings()
    assert s.deadline_ms("ride") == 42_000 and s.search_radii_m == [1_000.0, 4_000.0]


def test_the_old_retention_variable_still_sets_order_retention(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("RIDEFLOW_ORDER_RETENTION_S", raising=False)
    monkeypatch.setenv("RIDEFLOW_RIDE_RETENTION_S", "3600")
    with caplog.at_level(logging.WARNING, "rideflow.config"):
        assert Settings().order_retention_s == 3600
    assert "RIDEFLOW_RIDE_RETENTION_S is deprecated" in caplog.text
    assert "RIDEFLOW_ORDER_RETENTION_S" in caplog.text
    # The new name, or a value given in code, wins over the old name.
    assert Settings(order_retention_s=60).order_retention_s == 60
    monkeypatch.setenv("RIDEFLOW_ORDER_RETENTION_S", "120")
    assert Settings().order_retention_s == 120


def test_without_the_old_variable_the_default_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIDEFLOW_RIDE_RETENTION_S", raising=False)
    monkeypatch.delenv("RIDEFLOW_ORDER_RETENTION_S", raising=False)
    assert Settings().order_retention_s == 86_400


def test_child_processes_rebuild_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The e2e tests hand their settings to real processes through `env_of`."""
    s = settings_for(
        "redis://127.0.0.1:1/0",
        cities=[MYS],
        trusted_proxies=["10.0.0.0/8"],
        rate_limit_enabled=True,
        rate_default_policy="create",
    )
    for name, value in env_of(s).items():
        monkeypatch.setenv(name, value)
    assert Settings() == s
    # No variable reads as None: refused rather than silently left at its default.
    with pytest.raises(AssertionError, match="rate_default_policy=None"):
        env_of(s.model_copy(update={"rate_default_policy": None}))


def test_derived_values_follow_a_copy_with_other_values() -> None:
    """Derived values are computed, not cached: a copy with new fields derives from those."""
    base = Settings(search_radii_km=[1, 2], trusted_proxies=["10.0.0.0/8"])
    assert base.search_radii_m == [1000, 2000] and base.city_speed_mps["blr"] == 20 / 3.6
    assert [str(n) for n in base.trusted_networks] == ["10.0.0.0/8"]
    copy = base.model_copy(
        update={
            "search_radii_km": [0.5],
            "cities": [base.cities[0].model_copy(update={"speed_kmh": 36.0})],
            "trusted_proxies": [],
        }
    )
    assert copy.search_radii_m == [500]
    assert copy.city_speed_mps["blr"] == 10.0
    assert copy.trusted_networks == []
