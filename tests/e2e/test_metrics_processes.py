"""Metrics across real processes: two API processes and a dispatcher writing into one
`PROMETHEUS_MULTIPROC_DIR`, each API's /metrics summing them all; a process that stops takes its
live gauges with it and leaves its counters; `rideflow up` empties the directory at start."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from rideflow.auth.principal import Role
from rideflow.config import Settings
from rideflow.metrics.directory import ENV, prepare
from tests.auth import any_admin
from tests.conftest import BLR, env_of, offset
from tests.e2e.test_resilience import start_up, up_env
from tests.fleet import add_driver, request_ride, wait_for_status
from tests.metrics import Scrape, moved, scrape
from tests.servers import ApiService, DispatcherService, Service, free_port, wait_until
from tests.sockets import admin_client, opened

HEALTH = "rideflow_http_request_duration_seconds_count"


async def test_each_api_sums_every_process_of_the_directory(
    settings: Settings, tmp_path: Path
) -> None:
    directory = prepare(tmp_path / "metrics")
    env = {**env_of(settings), ENV: str(directory)}
    started: list[Service] = []
    try:
        one = ApiService(env, tmp_path, name="api-one")
        started.append(one)
        two = ApiService(env, tmp_path, name="api-two")
        started.append(two)
        started.append(DispatcherService(env, tmp_path, name="dispatcher"))
        async with admin_client(settings, one.url) as h1, admin_client(settings, two.url) as h2:
            before = await scrape(h1)
            await add_driver(h1, "D1", offset(*BLR, north_m=150))
            async with opened(settings, two.url, "D1", Role.DRIVER) as driver:
                # The socket is on process two; process one's scrape counts it.
                during = await scrape(h1)
                ride = await request_ride(h2, BLR, rider="c1")
                offer = (await driver.next("offer"))["data"]
                reply = await driver.request(
                    "offer.accept", {"offer_id": offer["offer_id"], "token": offer["token"]}
                )
                assert reply["data"]["order_status"] == "ACCEPTED", reply
            for client, n in ((h1, 5), (h2, 7)):
                for _ in range(n):
                    assert (await client.get("/healthz")).status_code == 200
            await wait_for_status(h1, ride, {"ACCEPTED"})
            after = await scrape(h1)
            from_two = await scrape(h2)

            ws = "rideflow_websocket_connections"
            assert moved(before, during, ws, role="DRIVER") == 1
            assert moved(before, after, HEALTH, route="/healthz", status="200") == 12
            assert moved(before, after, HEALTH, route="/v1/rides", status="202") == 1
            # Made by the dispatcher process, accepted on process two, seen from process one.
            assert moved(before, after, "rideflow_offers_total", outcome="offered") == 1
            assert moved(before, after, "rideflow_offers_total", outcome="accepted") == 1
            stages = "rideflow_dispatch_stage_duration_seconds_count"
            assert moved(before, after, stages, stage="queued_to_searching") == 1
            assert moved(before, after, stages, stage="offered_to_accepted") == 1
            # Either API's scrape reads the same directory.
            for name in ("rideflow_offers_total", "rideflow_dispatch_stage_duration_seconds_sum"):
                assert from_two.total(name) == after.total(name), name

            # Process two stops: its live gauges go with it, its counters stay summed.
            pid = two.pid
            assert list(directory.glob(f"gauge_livesum_{pid}.db"))
            # Stopped gracefully (uvicorn ends by re-raising the SIGTERM, after the lifespan).
            assert two.stop() in (0, -signal.SIGTERM), two.output()
            assert not list(directory.glob(f"gauge_live*_{pid}.db"))
            assert list(directory.glob(f"histogram_{pid}.db"))
            final = await scrape(h1)
            assert final.total(HEALTH, route="/healthz") == after.total(HEALTH, route="/healthz")
            assert final.total(ws) == before.total(ws)
    finally:
        for service in started:
            service.stop()


@pytest.mark.slow
def test_up_empties_the_directory_and_its_api_shows_the_dispatchers(tmp_path: Path) -> None:
    """A stale file of an earlier run would be summed into this one's (or, garbled, break
    every scrape): `rideflow up` removes it before its parts start."""
    api_port = free_port()
    env = up_env(tmp_path, api_port, free_port())
    env.pop(ENV, None)
    stale = tmp_path / "metrics" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"not an mmap file of this run")
    up = start_up(env, tmp_path / "up.log")
    try:
        assert not stale.exists()
        base = f"http://127.0.0.1:{api_port}"
        admin = any_admin()
        r = httpx.post(f"{base}/v1/drivers", json={"id": "d1", "name": "A"}, headers=admin)
        assert r.status_code == 201, r.text
        for method, path, body in (
            ("PUT", "/v1/drivers/d1/location", {"lat": BLR[0], "lng": BLR[1]}),
            ("PUT", "/v1/drivers/d1/status", {"status": "online"}),
        ):
            assert httpx.request(method, base + path, json=body, headers=admin).is_success
        ride = {"rider_id": "r1", "pickup": {"lat": BLR[0], "lng": BLR[1]},
                "dropoff": {"lat": BLR[0] + 0.01, "lng": BLR[1]}}  # fmt: skip
        assert httpx.post(f"{base}/v1/rides", json=ride, headers=admin).status_code == 202

        def offered() -> Scrape | None:
            r = httpx.get(f"{base}/metrics", headers=admin)
            assert r.status_code == 200, r.text
            s = Scrape.parse(r.text)
            return s if s.total("rideflow_offers_total", outcome="offered") == 1 else None

        # Only a dispatcher process makes offers: the API's scrape sums the directory.
        wait_until(offered, 20, "the dispatcher's offer in the API's metrics")
        assert any((tmp_path / "metrics").glob("*.db"))
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
