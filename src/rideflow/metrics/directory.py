"""Where the processes of one deployment keep their metrics: prometheus-client's multi-process
mode, a directory named by `PROMETHEUS_MULTIPROC_DIR` in which each process writes its own
memory-mapped files and from which a scrape of any API process sums them all.

The library's own variable, not a `RIDEFLOW_` setting: it chooses how values are stored when it
is imported, before any settings are read. `rideflow up` sets it for its parts (under the data
directory, emptied at start); a process started without it keeps its metrics in process. This
module does not import the library, so that the supervisor can prepare the directory cheaply."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory of this deployment's metrics, when its processes share one."""
    return os.environ.get(ENV) or None


def prepare(path: Path) -> Path:
    """Create `path`, or empty it of a previous run's files (the library's `*.db` only: a
    directory an operator named may hold other things). Counters of processes that are gone
    would otherwise be summed into this run's."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink(missing_ok=True)
    return path
