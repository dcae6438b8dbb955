"""The simulator's pure parts: the demand schedule (reproducible from its seed, shaped by its
curve and hot spots) and the report's figures from an order's events."""

from __future__ import annotations

from rideflow.sim import demand, report
from rideflow.sim.demand import Area
from rideflow.sim.geo import LatLng, distance_m, toward

AREA = Area(LatLng(12.9716, 77.5946), 5_000.0)


def schedule(seed: int, **kw: object) -> list[demand.Request]:
    args: dict[str, object] = {"duration_s": 600.0, "rate_per_min": 60.0, "customers": 10}
    args.update(kw)
    return demand.schedule(seed, AREA, **args)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    one, two = schedule(7), schedule(7)
    assert [r.json() for r in one] == [r.json() for r in two]
    assert demand.digest(one) == demand.digest(two)
    assert demand.digest(schedule(8)) != demand.digest(one)


def test_orders_come_in_time_order_within_the_run_and_the_area() -> None:
    requests = schedule(3, food_share=0.3, restaurants=2)
    times = [r.at_s for r in requests]
    assert times == sorted(times) and times[0] > 0 and times[-1] < 600
    assert [r.seq for r in requests] == list(range(len(requests)))
    for r in requests:
        assert AREA.contains(r.pickup) and AREA.contains(r.dropoff), r
        assert 0 <= r.customer < 10
    food = [r for r in requests if r.kind == "food"]
    sites = demand.restaurant_sites(3, AREA, 2)
    assert food and all(r.restaurant in (0, 1) for r in food)
    assert all(r.pickup == sites[r.restaurant or 0] for r in food)


def test_the_rate_is_the_mean_and_the_peaks_are_busier_than_the_base() -> None:
    requests = schedule(5, duration_s=3_600.0, rate_per_min=60.0)
    assert 3_300 < len(requests) < 3_900  # 3,600 expected
    evening = sum(1 for r in requests if 0.7 * 3600 <= r.at_s < 0.8 * 3600)
    night = sum(1 for r in requests if 0.9 * 3600 <= r.at_s < 1.0 * 3600)
    assert evening > 1.8 * night, (evening, night)


def test_most_pickups_gather_at_hot_spots() -> None:
    spots = demand.hot_spots(9, AREA)
    requests = schedule(9)
    near = sum(
        1 for r in requests if any(distance_m(r.pickup, s.at) < 2.5 * s.sigma_m for s in spots)
    )
    assert near / len(requests) > 0.6


def test_no_food_without_restaurants_and_no_orders_at_rate_zero() -> None:
    assert all(r.kind == "ride" for r in schedule(4, food_share=1.0, restaurants=0))
    assert schedule(4, rate_per_min=0.0) == []


def test_a_move_stops_at_its_target() -> None:
    a, b = LatLng(12.97, 77.59), LatLng(12.98, 77.60)
    halfway = toward(a, b, distance_m(a, b) / 2)
    assert abs(distance_m(a, halfway) - distance_m(a, b) / 2) < 1
    assert toward(a, b, 10 * distance_m(a, b)) == b


def ev(status: str, at: str, **kw: object) -> dict[str, object]:
    return {"status": status, "at": f"2026-01-01T10:00:{at}+00:00", **kw}


def test_an_orders_figures_from_its_events() -> None:
    events = [
        ev("QUEUED", "00.000"),
        ev("SEARCHING", "00.010"),
        ev("OFFERED", "00.250", offer_id="o1", pickup_distance_m=400.0),
        ev("SEARCHING", "03.000", offer_id="o1"),
        ev("OFFERED", "03.100", offer_id="o2", pickup_distance_m=900.0),
        ev("ACCEPTED", "05.100", offer_id="o2"),
        ev("DRIVER_ARRIVING", "05.200"),
        ev("PICKED_UP", "09.000"),
        ev("COMPLETED", "20.000"),
    ]
    f = report.figures(events)
    assert f == report.OrderFigures("COMPLETED", 2, 250.0, 5100.0, 900.0)
    live = report.figures(events[:5])
    assert (live.final, live.accept_ms, live.pickup_m) == (None, None, None)
    none = report.figures([ev("QUEUED", "00.000"), ev("NO_DRIVER_FOUND", "30.000")])
    assert none == report.OrderFigures("NO_DRIVER_FOUND", 0, None, None, None)


def test_the_report_counts_rates_percentiles_and_utilisation() -> None:
    orders = [
        report.OrderFigures("COMPLETED", 1, float(i), 1000.0 + i, 100.0 * i) for i in range(1, 21)
    ]
    orders += [report.OrderFigures("NO_DRIVER_FOUND", 0, None, None, None)] * 5
    built = report.build({}, orders, {"offers": 20}, online_s=100.0, busy_s=25.0)
    assert built["orders"] == 25
    assert built["final"] == {"COMPLETED": 20, "NO_DRIVER_FOUND": 5}
    assert (built["match_rate"], built["no_driver_found_rate"]) == (0.8, 0.2)
    assert built["time_to_first_offer_ms"] == {"n": 20, "p50": 10.0, "p95": 19.0, "mean": 10.5}
    assert built["pickup_distance_m"]["p95"] == 1900.0
    assert built["offers_per_order"] == {"mean": 0.8, "max": 1}
    assert built["driver_utilisation"] == 0.25
    assert report.percentile([], 50) is None
    assert report.percentile([5.0], 95) == 5.0
