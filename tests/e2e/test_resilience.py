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
from tests.conftest import BLR, env_of, settings_for
from tests.fleet import add_driver, request_ride, wait_for_status
from tests.servers import RedisServer, eventually, free_port, wait_until

RIDE = {
    "rider_id": "r1",
    "pickup": {"lat": BLR[0], "lng": BLR[1]},
    "dropoff": {"lat": 13.0, "lng": 77.6},
}


def status_of(url: str, method: str = "GET", **kw: Any) -> int:
    return httpx.request(method, url, timeout=10, **kw).status_code


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
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as c:
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


@pytest.mark.slow
def test_up_runs_everything_and_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    api_port, redis_port = free_port(), free_port()
    env = {
        **os.environ,
        **env_of(Settings(redis_url=None)),
        "RIDEFLOW_PORT": str(api_port),
        "RIDEFLOW_MANAGED_REDIS_PORT": str(redis_port),
        "RIDEFLOW_DATA_DIR": str(tmp_path),
        "RIDEFLOW_DISPATCHER_CONCURRENCY": "4",
    }
    env.pop("RIDEFLOW_REDIS_URL", None)
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "rideflow", "up"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{api_port}"

        def ready() -> bool:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            try:
                return status_of(f"{base}/readyz") == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 30, "rideflow up")
        children = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(up.pid)], check=False, capture_output=True, text=True
            ).stdout.split()
        ]
        assert len(children) == 4  # redis-server, api, dispatcher, job worker

        r = httpx.post(f"{base}/v1/drivers", json={"id": "d1", "name": "A"})
        assert r.status_code == 201
        assert (
            status_of(f"{base}/v1/drivers/d1/location", "PUT", json={"lat": BLR[0], "lng": BLR[1]})
            == 204
        )
        assert status_of(f"{base}/v1/drivers/d1/status", "PUT", json={"status": "online"}) == 200
        ride_id = httpx.post(f"{base}/v1/rides", json=RIDE).json()["ride_id"]
        wait_until(
            lambda: httpx.get(f"{base}/v1/rides/{ride_id}").json()["status"] == "OFFERED",
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
        log.close()
