"""`GET /v1/admin/analytics` over a scripted scenario with known counts: exactly those counts,
on SQLite and on PostgreSQL; percentiles computed in SQL and in Python agree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rideflow.config import Settings
from rideflow.record import analytics
from rideflow.record.db import Record
from tests.conftest import api_client, settings_for
from tests.integration.record_rows import Offer, Order, RequestLog, insert_rows, order_row

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z, the window's start
S = 1_000_000  # a second in us
WINDOW = {"from": "2023-11-14T22:13:20Z", "to": "2023-11-15T00:13:20Z", "bucket": "1h"}


def at(seconds: float) -> int:
    return T0 + int(seconds * S)


def offer(
    oid: str, order_id: str, offered: float, answered: float | None, outcome: str | None
) -> dict[str, Any]:
    return {
        "id": oid,
        "city": "blr",
        "order_id": order_id,
        "driver_id": "D1",
        "pickup_m": 100.0,
        "offered_us": at(offered),
        "answered_us": None if answered is None else at(answered),
        "outcome": outcome,
    }


def request(
    n: int,
    seconds: float,
    method: str,
    route: str,
    status: int,
    latency_us: int,
    policy: str | None = None,
) -> dict[str, Any]:
    return {
        "entry_id": f"{n}-0",
        "at_us": at(seconds),
        "method": method,
        "route": route,
        "status": status,
        "latency_us": latency_us,
        "client": "127.0.0.1",
        "rate_policy": policy,
        "rate_decision": "deny" if status == 429 else "allow",
    }


ORDERS = [
    # bucket 0: A completed after a rejection, B cancelled after acceptance, C no driver,
    # D cancelled while its second offer was pending (withdrawn) after a lapse
    order_row(
        "blr-A",
        at(10),
        offered_us=at(12),
        accepted_us=at(20),
        finished_us=at(600),
        pickup_m=400.0,
        offers=2,
        status="COMPLETED",
    ),
    order_row(
        "blr-B",
        at(100),
        offered_us=at(103),
        accepted_us=at(130),
        cancelled_us=at(200),
        pickup_m=800.0,
        offers=1,
        status="CANCELLED",
    ),
    order_row("blr-C", at(300), no_driver_us=at(400), status="NO_DRIVER_FOUND"),
    order_row(
        "blr-D", at(1000), offered_us=at(1001), cancelled_us=at(1020), offers=2, status="CANCELLED"
    ),
    # F is created in bucket 0 and first offered, accepted in bucket 1; E all in bucket 1
    order_row(
        "blr-F",
        at(3500),
        offered_us=at(3650),
        accepted_us=at(3660),
        pickup_m=1000.0,
        offers=1,
        status="ACCEPTED",
    ),
    order_row(
        "blr-E",
        at(3700),
        offered_us=at(3704),
        accepted_us=at(3710),
        finished_us=at(4000),
        pickup_m=600.0,
        offers=1,
        status="COMPLETED",
        kind="delivery",
    ),
    # outside the window: G before it, H at its end (excluded)
    order_row(
        "blr-G",
        at(-100),
        offered_us=at(-90),
        accepted_us=at(-80),
        finished_us=at(-10),
        pickup_m=5.0,
        offers=1,
        status="COMPLETED",
    ),
    order_row("blr-H", at(7200), status="QUEUED"),
]
OFFERS = [
    offer("A1", "blr-A", 12, 15, "rejected"),
    offer("A2", "blr-A", 18, 20, "accepted"),
    offer("B1", "blr-B", 103, 130, "accepted"),
    offer("D1", "blr-D", 1001, 1016, "lapsed"),
    offer("D2", "blr-D", 1017, 1020, "withdrawn"),
    offer("F1", "blr-F", 3650, 3660, "accepted"),
    offer("E1", "blr-E", 3704, 3710, "accepted"),
    offer("G1", "blr-G", -90, -80, "accepted"),
    offer("P1", "blr-H", 7100, None, None),  # pending, made in bucket 1
]
REQUESTS = [
    *(request(i, 50 + i, "GET", "/v1/rides/{ride_id}", 200, i * 1000) for i in range(1, 6)),
    request(6, 60, "POST", "/v1/rides", 202, 500),
    request(7, 61, "POST", "/v1/rides", 429, 700, "create"),
    request(8, 62, "POST", "/v1/rides", 429, 900, "create"),
    request(9, 3700, "POST", "/request-ride", 429, 100, "create"),
    request(10, 3701, "GET", "/v1/rides/{ride_id}", 429, 50, "default"),
    request(11, -1, "GET", "/v1/rides/{ride_id}", 429, 50, "default"),  # before the window
]

EXPECTED_BUCKETS = [
    {
        "start": "2023-11-14T22:13:20Z",
        "end": "2023-11-14T23:13:20Z",
        "orders": {
            "created": 5,
            "offered": 3,
            "accepted": 2,
            "completed": 1,
            "cancelled": 2,
            "no_driver_found": 1,
        },
        "offers": {
            "made": 5,
            "accepted": 2,
            "rejected": 1,
            "lapsed": 1,
            "withdrawn": 1,
            "acceptance_rate": 0.5,
        },
        "time_to_first_offer_ms": {"n": 3, "p50": 2000.0, "p95": 2900.0},
        "time_to_accept_ms": {"n": 2, "p50": 20000.0, "p95": 29000.0},
        "mean_pickup_m": 600.0,
        "offers_per_order": 1.25,
        "requests": {
            "GET /v1/rides/{ride_id}": {"requests": 5, "p95_ms": 4.8},
            "POST /v1/rides": {"requests": 3, "p95_ms": 0.88},
        },
        "rate_limited": {"create": 2},
    },
    {
        "start": "2023-11-14T23:13:20Z",
        "end": "2023-11-15T00:13:20Z",
        "orders": {
            "created": 1,
            "offered": 2,
            "accepted": 2,
            "completed": 1,
            "cancelled": 0,
            "no_driver_found": 0,
        },
        "offers": {
            "made": 3,
            "accepted": 2,
            "rejected": 0,
            "lapsed": 0,
            "withdrawn": 0,
            "acceptance_rate": 1.0,
        },
        "time_to_first_offer_ms": {"n": 2, "p50": 77000.0, "p95": 142700.0},
        "time_to_accept_ms": {"n": 2, "p50": 85000.0, "p95": 152500.0},
        "mean_pickup_m": 800.0,
        "offers_per_order": 1.0,
        "requests": {
            "POST /request-ride": {"requests": 1, "p95_ms": 0.1},
            "GET /v1/rides/{ride_id}": {"requests": 1, "p95_ms": 0.05},
        },
        "rate_limited": {"create": 1, "default": 1},
    },
]


@pytest.fixture
async def scenario(record_url: str) -> str:
    await insert_rows(record_url, Order, ORDERS)
    await insert_rows(record_url, Offer, OFFERS)
    await insert_rows(record_url, RequestLog, REQUESTS)
    return record_url


@pytest.fixture
async def api(record_url: str, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings_for(settings.redis_url, database_url=record_url)) as c:
        yield c


async def test_a_scripted_scenario_gives_exactly_its_counts(
    scenario: str, api: httpx.AsyncClient
) -> None:
    reply = await api.get("/v1/admin/analytics", params=WINDOW)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["from"], body["to"], body["bucket"], body["bucket_s"]) == (
        "2023-11-14T22:13:20Z",
        "2023-11-15T00:13:20Z",
        "1h",
        3600,
    )
    assert body["buckets"] == EXPECTED_BUCKETS


async def test_percentiles_in_sql_and_in_python_agree(scenario: str, settings: Settings) -> None:
    record = Record(settings_for(settings.redis_url, database_url=scenario))
    try:
        python = await analytics.analytics(record, T0, at(7200), "15m", percentiles="python")
        if record.postgres:
            sql = await analytics.analytics(record, T0, at(7200), "15m", percentiles="sql")
            assert sql == python
        # A and B are first offered in the first 15 minutes: 2 s and 3 s
        assert python.buckets[0].time_to_first_offer_ms == analytics.Spread(
            n=2, p50=2500.0, p95=2950.0
        )
        assert len(python.buckets) == 8
    finally:
        await record.dispose()


async def test_an_empty_window_has_every_bucket_with_zeros(api: httpx.AsyncClient) -> None:
    reply = await api.get("/v1/admin/analytics", params={**WINDOW, "bucket": "30m"})
    assert reply.status_code == 200, reply.text
    buckets = reply.json()["buckets"]
    assert len(buckets) == 4
    assert all(b["orders"]["created"] == 0 for b in buckets)
    assert all(b["offers"]["acceptance_rate"] is None for b in buckets)
    assert all(b["time_to_accept_ms"] == {"n": 0, "p50": None, "p95": None} for b in buckets)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bucket": "7x"}, "bucket"),
        ({"bucket": "0m"}, "bucket"),
        ({"from": "2023-11-13T00:00:00Z", "to": "2023-11-15T00:00:00Z", "bucket": "1m"}, "bucket"),
        ({"from": "2023-11-15T00:00:00Z", "to": "2023-11-14T00:00:00Z"}, "from"),
        ({"from": "2023-11-15T00:00:00Z", "to": "2023-11-15T00:00:00Z"}, "from"),
        ({"to": "soon"}, "to"),
        ({"from": "0001-01-01T00:00:00+23:59", "to": "2023-01-01T00:00:00Z"}, "from"),
    ],
)
async def test_bad_analytics_parameters_are_422_naming_them(
    api: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    reply = await api.get("/v1/admin/analytics", params=params)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in reply.json()["errors"]] == [field]


def test_percentile_is_continuous_like_percentile_cont() -> None:
    assert analytics.percentile([], 0.5) is None
    assert analytics.percentile([7.0], 0.95) == 7.0
    assert analytics.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert analytics.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
