"""What `rideflow up` starts for a given shape: names and arguments of every part."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rideflow.config import Settings
from rideflow.workers.supervisor import Shape


def test_the_default_shape_is_one_api_two_dispatchers_one_job_worker_one_recorder() -> None:
    shape = Shape.of(Settings())
    assert shape == Shape(api=1, dispatchers=2, jobs=1, recorders=1)
    assert [name for name, _ in shape.parts(16)] == [
        "api-1",
        "jobs-1",
        "recorder-1",
        "dispatcher-1",
        "dispatcher-2",
    ]


def test_every_part_is_named_and_only_the_first_recorder_samples() -> None:
    shape = Shape(api=2, dispatchers=3, jobs=2, recorders=2)
    assert shape.parts(8) == [
        ("api-1", ["api", "--reuse-port", "--name", "api-1"]),
        ("api-2", ["api", "--reuse-port", "--name", "api-2"]),
        ("jobs-1", ["jobs"]),
        ("jobs-2", ["jobs"]),
        ("recorder-1", ["recorder"]),
        ("recorder-2", ["recorder", "--no-sample"]),
        ("dispatcher-1", ["dispatcher", "--concurrency", "8"]),
        ("dispatcher-2", ["dispatcher", "--concurrency", "8"]),
        ("dispatcher-3", ["dispatcher", "--concurrency", "8"]),
    ]
    assert str(shape) == "2 API processes, 3 dispatchers, 2 job workers, 2 recorders"


@pytest.mark.parametrize("field", ["api_workers", "dispatchers", "job_workers", "recorders"])
@pytest.mark.parametrize("count", [0, -1, 65])
def test_counts_out_of_range_are_refused(field: str, count: int) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: count})
