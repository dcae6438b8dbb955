"""The benchmark's charts: a PNG drawn from latency samples and linked from RESULTS.md."""

from __future__ import annotations

import random
from pathlib import Path

from bench.charts import chart_lines, write_latency_chart


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
