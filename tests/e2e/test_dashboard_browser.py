"""The dashboard in a real browser: Playwright driving Debian's Chromium against a real `rideflow
api` process and a real Redis. Log in through the page's form, see the drivers on the map, run a
GEOSEARCH and see its hits, run the race simulator (for real) and see exactly one winner, open an
order's timeline and its Redis commands; no console error; `/docs` renders with every
non-loopback request blocked. A screenshot of each section goes to test-results/dashboard/."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from bench.dashboard_bench import CHROMIUM, chromium_missing, create_admin, seed_fleet

from rideflow.config import Settings
from tests.auth import bearer
from tests.conftest import BLR, env_of, settings_for
from tests.servers import ApiService, RedisServer

SHOTS = Path(__file__).resolve().parents[2] / "test-results" / "dashboard"
EMAIL, PASSWORD = "ops@example.com", "correct horse battery staple"
DRIVERS = 300

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")


@pytest.fixture
def stack(
    flushed: RedisServer, tmp_path: Path, services: Callable[..., Any]
) -> Iterator[tuple[Settings, ApiService]]:
    settings = settings_for(
        flushed.url, database_url=f"sqlite+aiosqlite:///{tmp_path / 'record.db'}"
    )
    create_admin({**os.environ, **env_of(settings)}, EMAIL, PASSWORD)
    api: ApiService = services("api", settings)
    yield settings, api


def loopback_only(route: Any) -> None:
    host = urlparse(route.request.url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        route.continue_()
    else:
        route.abort()


ONLINE = DRIVERS - DRIVERS // 10
"""Every tenth seeded driver is left offline (drawn grey, not counted online)."""


def check_map_and_search(page: Any, expect: Any) -> None:
    # 1. the map: every seeded driver drawn from the admin socket's snapshot
    expect(page.locator("#map")).to_have_attribute("data-drivers", str(DRIVERS), timeout=15000)
    expect(page.locator("#map-status")).to_contain_text(f"{ONLINE} available")
    page.locator("#map-section").screenshot(path=SHOTS / "1-map.png")
    # 2. GEOSEARCH at the centre: the nearest drivers, ranked, with distances
    page.fill("#geo-point", f"{BLR[0]},{BLR[1]}")
    page.fill("input[name=radius]", "3")
    page.click("#geo-form button")
    expect(page.locator("#geo-out")).to_contain_text("GEOSEARCH rf:{blr}:pool")
    expect(page.locator("#geo-out")).to_have_attribute("data-hits", "10")
    first = page.locator("#geo-out").inner_text().splitlines()[3]
    assert first.startswith('1) "driver:') and " km [" in first, first
    page.locator("#geo-section").screenshot(path=SHOTS / "2-geosearch.png")


def check_race_timeline_console(page: Any, expect: Any) -> None:
    # 4. the race, for real: exactly one order holds the near driver, the other the next
    page.click("#race-unsafe")
    expect(page.locator("#race-unsafe-out")).to_contain_text("Double assignment")
    page.click("#race-safe")
    verdict = page.locator("#race-verdict")
    expect(verdict).to_contain_text("One order wins", timeout=15000)
    expect(verdict).to_have_attribute("data-winners", "1")
    page.locator("#race-section").screenshot(path=SHOTS / "4-race.png")
    # 3 and 5. the winner's timeline (opened by the race) and its Redis commands
    timeline = page.locator("#timeline")
    # The race cleans up after itself: its orders end CANCELLED, its drivers go offline.
    expect(page.locator("#race-safe-out")).to_contain_text("cleaned up", timeout=10000)
    expect(timeline).to_have_attribute("data-steps", "4", timeout=10000)
    for text in ("QUEUED", "SEARCHING", "OFFERED", "CANCELLED", " ms ("):
        expect(timeline).to_contain_text(text)
    page.locator("#timeline-section").screenshot(path=SHOTS / "3-timeline.png")
    console = page.locator("#console")
    expect(console).to_contain_text("SET rf:{blr}:lease:")
    expect(console).to_contain_text(" NX PX ")
    page.locator("#console-section").screenshot(path=SHOTS / "5-console.png")


def check_explorer_and_kpis(page: Any, expect: Any) -> None:
    # 6. the API explorer: the assignment contract from the page
    page.click("#explorer-send")
    expect(page.locator("#explorer-out")).to_contain_text('"delivery_id"', timeout=10000)
    page.locator("#explorer-section").screenshot(path=SHOTS / "6-explorer.png")
    # 7. KPIs: online drivers (the seeded ones; the race's two went offline after it) and
    # today's leaderboard
    expect(page.locator("#kpi-online")).to_have_text(str(ONLINE), timeout=10000)
    expect(page.locator("#leaderboard")).to_contain_text("no trip completed yet today")
    page.locator("#kpi-section").screenshot(path=SHOTS / "7-kpis.png")
    page.screenshot(path=SHOTS / "0-page.png", full_page=True)


@pytest.mark.timeout(180)
def test_the_dashboard_in_a_real_browser(stack: tuple[Settings, ApiService]) -> None:
    from playwright.sync_api import expect, sync_playwright

    settings, api = stack
    seed_fleet(api.url, bearer(settings, "admin-1", "ADMIN"), DRIVERS, BLR, offline_every=10)
    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    blocked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.route("**/*", loopback_only)
        context.on("requestfailed", lambda r: blocked.append(r.url))
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{api.url}/dashboard")
        page.fill("input[name=username]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        page.click("#login-form button")
        check_map_and_search(page, expect)
        check_race_timeline_console(page, expect)
        check_explorer_and_kpis(page, expect)
        # /docs with no internet: Swagger UI from the package's own assets
        docs = context.new_page()
        docs.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        docs.goto(f"{api.url}/docs")
        expect(docs.locator(".swagger-ui .info .title")).to_contain_text("RideFlow", timeout=15000)
        expect(docs.locator("#operations-admin-geosearch_v1_admin_geosearch_get")).to_be_visible()
        docs.screenshot(path=SHOTS / "8-docs.png")
        browser.close()
    assert errors == [], errors
    assert blocked == [], f"requests left the machine: {blocked}"
