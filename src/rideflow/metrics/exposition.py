"""The text a scrape gets: every process of the deployment summed (multi-process mode), or this
process's own registry when it runs alone."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from rideflow.metrics import families  # noqa: F401  (the families, registered on import)
from rideflow.metrics.directory import multiprocess_dir

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text format, which every Prometheus version reads."""


def render() -> bytes:
    """The metrics in Prometheus' text format. Multi-process: the files of every process that
    wrote into the directory, read now (a process that is gone still counts; its live gauges
    do not). Alone: this process's registry, with the library's process and GC collectors."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
