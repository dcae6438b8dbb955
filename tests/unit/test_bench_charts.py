"""The benchmark's charts: a PNG drawn from latency samples and linked from RESULTS.md."""

from __future__ import annotations

import random
from pathlib import Path

from bench.charts import chart_lines, write_latency_chart, write_pickup_chart


def test_a_latency_chart_is_drawn_from_samples_and_linked(tmp_path: Path) -> None:
    rng = random.Random(7)
    samples = {
        "fast": [rng.lognormvariate(0, 0.5) for _ in range(5_000)],
        "slow": [rng.lognormvariate(2, 0.3) for _ in range(300)],
        "empty": [],
    }
    png = tmp_path / "charts" / "latency.png"
    assert write_latency_chart(samples, png)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and 10_000 < len(data) < 400_000
    assert chart_lines(png.parent, tmp_path) == [
        "## Charts",
        "",
        "![latency](charts/latency.png)",
        "",
    ]


def test_nothing_to_draw_writes_nothing(tmp_path: Path) -> None:
    png = tmp_path / "latency.png"
    assert not write_latency_chart({"none": []}, png)
    assert not png.exists()
    assert chart_lines(tmp_path, tmp_path) == []


def test_the_pickup_chart_has_a_panel_per_scenario(tmp_path: Path) -> None:
    rng = random.Random(3)
    panels = {
        "supply 1.1x demand": {
            "greedy": [rng.uniform(0, 3000) for _ in range(400)],
            "batch": [rng.uniform(0, 2500) for _ in range(400)],
        },
        "supply 2x demand": {"greedy": [rng.uniform(0, 1000) for _ in range(400)], "batch": []},
    }
    png = tmp_path / "batch_vs_greedy.png"
    assert write_pickup_chart(panels, png)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and 10_000 < len(data) < 200_000
    empty = tmp_path / "empty.png"
    assert not write_pickup_chart({"nothing": {"greedy": [], "batch": []}}, empty)
    assert not empty.exists()
