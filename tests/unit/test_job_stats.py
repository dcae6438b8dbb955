"""Job statistics from a task's counters and its latest completions, no Redis."""

from __future__ import annotations

import pytest

from rideflow.jobs.store import RECENT_KEPT, THROUGHPUT_WINDOW_MS, _pct, task_stats

NOW = 10_000_000


def row(finished_ms: int, run_ms: float = 1.0, wait_ms: float = 0.0) -> str:
    """One completion as the finish script records it: finished (ms), run and wait (µs)."""
    return f"{finished_ms},{int(run_ms * 1000)},{int(wait_ms * 1000)}"


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, None),
        ([7.0], 50, 7.0),
        ([7.0], 99, 7.0),
        ([float(v) for v in range(1, 101)], 50, 50.0),
        ([float(v) for v in range(1, 101)], 99, 99.0),
        ([float(v) for v in range(1, 101)], 100, 100.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),  # nearest rank, never interpolated
        ([1.0, 2.0, 3.0, 4.0], 99, 4.0),
        ([0.12345], 50, 0.123),
    ],
)
def test_percentiles_are_nearest_rank(values: list[float], p: float, expected: float) -> None:
    assert _pct(values, p) == expected


def test_no_completions_yet() -> None:
    stats = task_stats({"submitted": "3"}, [], NOW)
    assert stats.submitted == 3 and stats.completed == stats.failed == stats.retried == 0
    assert stats.throughput_per_s == 0
    assert stats.run_ms_p50 is stats.run_ms_p99 is stats.wait_ms_p50 is None


def test_throughput_counts_the_last_minute_only() -> None:
    recent = [row(NOW - 1_000), row(NOW - 30_000), row(NOW - THROUGHPUT_WINDOW_MS)]
    recent += [row(NOW - THROUGHPUT_WINDOW_MS - 1), row(NOW - 3_600_000)]
    stats = task_stats({"completed": "5", "retried": "2"}, recent, NOW)
    assert stats.throughput_per_s == round(3 / 60, 3)
    assert stats.completed == 5 and stats.retried == 2


def test_a_full_list_inside_the_window_is_measured_over_its_own_span() -> None:
    # RECENT_KEPT completions in the last 10 s: the list holds no more, so counting it over the
    # whole minute would report a sixth of the real rate.
    span_ms = 10_000
    recent = [row(NOW - i * span_ms // (RECENT_KEPT - 1)) for i in range(RECENT_KEPT)]
    stats = task_stats({}, recent, NOW)
    assert stats.throughput_per_s == round(RECENT_KEPT / span_ms * 1000, 3)
    # One of them older than the window: counted over the minute again.
    recent[-1] = row(NOW - THROUGHPUT_WINDOW_MS - 1)
    assert task_stats({}, recent, NOW).throughput_per_s == round((RECENT_KEPT - 1) / 60, 3)


def test_run_and_wait_percentiles_in_milliseconds() -> None:
    recent = [row(NOW - i, run_ms=i + 1, wait_ms=(i + 1) / 10) for i in range(100)]
    stats = task_stats({}, recent, NOW)
    assert (stats.run_ms_p50, stats.run_ms_p99) == (50.0, 99.0)
    assert (stats.wait_ms_p50, stats.wait_ms_p99) == (5.0, 9.9)
