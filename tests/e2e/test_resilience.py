"""Redis going away and coming back; `rideflow up` starting and stopping everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rideflow.config import Settings
from tests.auth import TEST_JWT_SECRET, admin, any_admin
from tests.conftest import BLR, env_of, settings_for
from tests.fleet import add_driver, request_ride, wait_for_status
from tests.servers import RedisServer, eventually, free_port, wait_until

RIDE = {
    "rider_id": "r1",
    "pickup": {"lat": BLR[0], "lng": BLR[1]},
    "dropoff": {"lat": 13.0, "lng": 77.6},
}


def status_of(url: str, method: str = "GET", **kw: Any) -> int:
    return httpx.request(method, url, timeout=10, headers=any_admin(), **kw).status_code


@pytest.mark.slow
async def test_redis_down_is_503_and_everything_recovers(
    tmp_path: Path, services: Callable[..., Any]
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        settings = settings_for(redis.url, ride_deadline_s=30.0)
        api = services("api", settings)
        dispatcher = services("dispatcher", settings)
        redis.stop()
        async with httpx.AsyncClient(base_url=api.url, timeout=10, headers=admin(settings)) as c:
            r = await c.post("/v1/rides", json=RIDE)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert "Redis is unreachable" in r.json()["detail"]
            assert r.headers["Retry-After"] == "1"
            assert (await c.get("/readyz")).status_code == 503
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/v1/rides/blr-x")).status_code == 503
            await eventually(
                async_true(lambda: "retrying" in dispatcher.output()),
                10,
                "the dispatcher to notice",
            )
            assert api.alive() and dispatcher.alive()

            redis.start()  # same port, empty: the dispatcher must recreate its consumer group

            async def ready() -> bool:
                return (await c.get("/readyz")).status_code == 200

            await eventually(ready, 15, "readiness")
            await add_driver(c, "back", BLR)
            ride = await wait_for_status(c, await request_ride(c, BLR), {"OFFERED"}, within=20)
        assert ride["driver"]["id"] == "back"
    finally:
        redis.stop()


def async_true(check: Callable[[], bool]) -> Callable[[], Any]:
    async def condition() -> bool:
        return check()

    return condition


def up_env(tmp_path: Path, api_port: int, redis_port: int) -> dict[str, str]:
    env = {
        **os.environ,
        **env_of(Settings(redis_url=None)),
        "RIDEFLOW_PORT": str(api_port),
        "RIDEFLOW_MANAGED_REDIS_PORT": str(redis_port),
        "RIDEFLOW_DATA_DIR": str(tmp_path),
        "RIDEFLOW_DISPATCHER_CONCURRENCY": "4",
        "RIDEFLOW_JWT_SECRET": TEST_JWT_SECRET,
    }
    env.pop("RIDEFLOW_REDIS_URL", None)
    return env


def start_up(
    env: dict[str, str], log_path: Path, *args: str, within: float = 30
) -> subprocess.Popen[bytes]:
    """`rideflow up *args`, waited for until it is ready."""
    with log_path.open("ab") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "rideflow", "up", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{env['RIDEFLOW_PORT']}"

    def ready() -> bool:
        assert up.poll() is None, log_path.read_text()
        try:
            return status_of(f"{base}/readyz") == 200
        except httpx.TransportError:
            return False

    wait_until(ready, within, "rideflow up")
    return up


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def gone(pid: int) -> bool:
    """The process has exited (a zombie left for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_up_runs_everything_and_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    api_port, redis_port = free_port(), free_port()
    up = start_up(up_env(tmp_path, api_port, redis_port), tmp_path / "up.log")
    try:
        base = f"http://127.0.0.1:{api_port}"
        children = children_of(up.pid)
        assert len(children) == 6  # redis-server, api, two dispatchers, job worker, recorder

        r = httpx.post(f"{base}/v1/drivers", json={"id": "d1", "name": "A"}, headers=any_admin())
        assert r.status_code == 201
        assert (
            status_of(f"{base}/v1/drivers/d1/location", "PUT", json={"lat": BLR[0], "lng": BLR[1]})
            == 204
        )
        assert status_of(f"{base}/v1/drivers/d1/status", "PUT", json={"status": "online"}) == 200
        ride_id = httpx.post(f"{base}/v1/rides", json=RIDE, headers=any_admin()).json()["ride_id"]
        wait_until(
            lambda: (
                httpx.get(f"{base}/v1/rides/{ride_id}", headers=any_admin()).json()["status"]
                == "OFFERED"
            ),
            15,
            "the ride to be offered",
        )

        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists(), f"process {pid} was left running"
        assert (tmp_path / "redis" / "appendonlydir").is_dir(), "AOF is on for managed Redis"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


@pytest.mark.slow
def test_up_killed_with_9_leaves_nothing_running_and_starts_again(tmp_path: Path) -> None:
    api_port, redis_port = free_port(), free_port()
    env = up_env(tmp_path, api_port, redis_port)
    first = start_up(env, tmp_path / "up.log")
    second = None
    children = children_of(first.pid)
    try:
        assert len(children) == 6
        first.kill()
        first.wait()
        # Started at once: it waits for the ports the dying children still hold.
        second = start_up(env, tmp_path / "up.log")
        for pid in children:
            wait_until(lambda pid=pid: gone(pid), 20, f"process {pid} to exit")  # type: ignore[misc]
        base = f"http://127.0.0.1:{api_port}"
        r = httpx.post(f"{base}/v1/drivers", json={"id": "d1", "name": "A"}, headers=any_admin())
        assert r.status_code == 201, r.text
        second.send_signal(signal.SIGINT)
        assert second.wait(30) == 0
    finally:
        for up in (first, second):
            if up is not None and up.poll() is None:
                up.kill()
                up.wait()
        for pid in children:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
