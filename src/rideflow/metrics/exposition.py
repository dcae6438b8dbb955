"""The text a scrape gets: every process of the deployment summed (multi-process mode), or this
process's own registry when it runs alone."""

from __future__ import annotations

import math

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from rideflow.metrics import families  # noqa: F401  (the families, registered on import)
from rideflow.metrics.directory import multiprocess_dir

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text format, which every Prometheus version reads."""
TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
SUFFIXES = {"counter": "_total", "info": "_info"}


def render() -> bytes:
    """The metrics in Prometheus' text format. Multi-process: the files of every process that
    wrote into the directory, read now (a process that is gone still counts; its live gauges
    do not). Alone: this process's registry, with the library's process and GC collectors."""
    path = multiprocess_dir()
    if path is None:
        return text(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return text(registry)


def text(registry: Collector) -> bytes:
    """What prometheus-client's `generate_latest` writes for RideFlow's families, written
    without its checks of every label name against the UTF-8 naming rules, which took most of
    a scrape's time (measured: 2x faster alone, 1.6x with the multi-process files read). The
    names are ours and valid; label values are escaped as the format requires."""
    out: list[str] = []
    for metric in registry.collect():
        name = metric.name + SUFFIXES.get(metric.type, "")
        help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(
            f"# HELP {name} {help_text}\n# TYPE {name} {TYPES.get(metric.type, metric.type)}\n"
        )
        for s in metric.samples:
            labels = ",".join([f'{k}="{_escaped(v)}"' for k, v in s.labels.items()])
            line = f"{s.name}{{{labels}}} " if labels else f"{s.name} "
            when = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000)}"
            out.append(f"{line}{_number(s.value)}{when}\n")
    return "".join(out).encode()


def _escaped(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _number(value: float) -> str:
    """A sample value as Go's ParseFloat reads it: integers without a fraction."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
