"""The scrape's text writer says what prometheus-client's own `generate_latest` says: the same
families, types, help texts and samples, label values with quotes, backslashes and newlines
included, as the library's parser reads them back."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rideflow.metrics.exposition import text


def parsed(body: bytes) -> set[tuple[str, str, str, tuple[tuple[str, str], ...], float | str]]:
    out = set()
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            value = "NaN" if math.isnan(s.value) else s.value
            out.add((family.name, family.type, s.name, tuple(sorted(s.labels.items())), value))
        out.add((family.name, family.type, "# HELP", (), family.documentation))
    return out


def test_the_text_is_what_the_library_writes() -> None:
    registry = CollectorRegistry()
    counter = Counter("c_total", "a counter\nwith a \\ newline", ["route"], registry=registry)
    counter.labels('/v1/"quoted"/\\back\nslash').inc(3)
    counter.labels("/plain").inc(0.25)
    gauge = Gauge("g_entries", "a gauge", ["stream", "city"], registry=registry)
    gauge.labels("requests", "blr").set(-1.5e-7)
    gauge.labels("requests", "").set(math.inf)
    gauge.labels("x", "y").set(math.nan)
    Gauge("plain", "no labels", registry=registry).set(12345678901234567)
    histogram = Histogram(
        "h_seconds", "a histogram", ["stage"], buckets=(0.001, 1), registry=registry
    )
    for v in (0.0005, 0.5, 7):
        histogram.labels("queued").observe(v)
    Info("build", "an info", registry=registry).info({"version": "1"})
    ours, theirs = parsed(text(registry)), parsed(generate_latest(registry))
    assert ours == theirs
    assert len(ours) == 5 + 12  # five help texts; twelve samples
