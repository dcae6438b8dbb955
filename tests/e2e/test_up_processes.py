"""`rideflow up` running several of each process: the API processes share one port, rides are
dispatched and recorded, and one API process killed with -9 stops everything; bad counts are
refused before anything starts."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from rideflow.api.listener import PROCESS_HEADER
from rideflow.config import Settings
from tests.auth import any_admin
from tests.conftest import BLR, offset, run_rideflow
from tests.e2e.test_resilience import RIDE, children_of, gone, start_up, up_env
from tests.servers import free_port, wait_until

RIDES = 16
"""Rides, each sent on a connection of its own: that all land on one of two API processes
has a chance of 2 ** -15."""


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]


def kinds(pids: list[int]) -> dict[str, list[list[str]]]:
    """The children's command lines by kind (`api`, `dispatcher`, ..., `redis-server`)."""
    out: dict[str, list[list[str]]] = {}
    for pid in pids:
        argv = cmdline(pid)
        kind = argv[3] if argv[1:3] == ["-m", "rideflow"] else Path(argv[0].split()[0]).name
        out.setdefault(kind, []).append(argv[4:])
    return out


def recorded_orders(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM orders").fetchone()[0])


@pytest.mark.slow
def test_two_of_each_share_the_port_dispatch_record_and_stop_together(tmp_path: Path) -> None:
    api_port, redis_port = free_port(), free_port()
    env = up_env(tmp_path, api_port, redis_port)
    shape = ["--api-workers", "2", "--dispatchers", "2", "--job-workers", "2", "--recorders", "2"]
    up = start_up(env, tmp_path / "up.log", *shape, within=90)
    children = children_of(up.pid)
    try:
        running = kinds(children)
        assert sorted(running["api"]) == [
            ["--reuse-port", "--name", "api-1"],
            ["--reuse-port", "--name", "api-2"],
        ]
        assert running["dispatcher"] == [["--concurrency", "4"]] * 2
        assert running["jobs"] == [[]] * 2
        assert sorted(running["recorder"]) == [[], ["--no-sample"]]  # one samples drivers
        assert len(running["redis-server"]) == 1 and len(children) == 9

        base = f"http://127.0.0.1:{api_port}"
        headers = any_admin()
        for n in range(RIDES):
            driver = f"d{n}"
            r = httpx.post(
                f"{base}/v1/drivers", json={"id": driver, "name": driver}, headers=headers
            )
            assert r.status_code == 201, r.text
            lat, lng = offset(*BLR, north_m=100 + 10 * n)
            r = httpx.put(
                f"{base}/v1/drivers/{driver}/location",
                json={"lat": lat, "lng": lng},
                headers=headers,
            )
            assert r.status_code == 204, r.text
            r = httpx.put(
                f"{base}/v1/drivers/{driver}/status", json={"status": "online"}, headers=headers
            )
            assert r.status_code == 200, r.text
        answered_by, rides = set(), []
        for _ in range(RIDES):
            r = httpx.post(f"{base}/v1/rides", json=RIDE, headers=headers)  # a new connection
            assert r.status_code == 202, r.text
            answered_by.add(r.headers[PROCESS_HEADER])
            rides.append(r.json()["ride_id"])
        assert answered_by == {"api-1", "api-2"}

        def offered() -> bool:
            return all(
                httpx.get(f"{base}/v1/rides/{ride}", headers=headers).json()["status"] == "OFFERED"
                for ride in rides
            )

        wait_until(offered, 30, "every ride to be offered", 0.2)
        wait_until(
            lambda: recorded_orders(tmp_path / "rideflow.db") == RIDES,
            60,
            "the recorders to record every ride",
            0.2,
        )

        api_2 = next(p for p in children if cmdline(p)[-1] == "api-2")
        os.kill(api_2, signal.SIGKILL)
        assert up.wait(60) == 1
        for pid in children:
            wait_until(lambda pid=pid: gone(pid), 20, f"process {pid} to exit")  # type: ignore[misc]
        log = (tmp_path / "up.log").read_text()
        assert "api-2 exited; stopping everything" in log
        assert "2 API processes, 2 dispatchers, 2 job workers, 2 recorders" in log
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for pid in children:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--api-workers", "0"], {}, "Invalid value for '--api-workers'"),
        (["--dispatchers", "65"], {}, "Invalid value for '--dispatchers'"),
        ([], {"RIDEFLOW_RECORDERS": "0"}, "RIDEFLOW_RECORDERS='0': Input should be greater"),
        ([], {"RIDEFLOW_JOB_WORKERS": "two"}, "RIDEFLOW_JOB_WORKERS='two': Input should be a"),
    ],
)
async def test_bad_counts_are_refused_before_anything_starts(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    port = free_port()
    settings = Settings(redis_url=None, data_dir=str(tmp_path), managed_redis_port=port)
    done = await run_rideflow(settings, "up", *args, timeout_s=60, **env)
    assert done.returncode == 2, done
    assert message in " ".join((done.stdout + done.stderr).split()), done.stderr
    assert not (tmp_path / "redis").exists()  # no managed Redis was started
