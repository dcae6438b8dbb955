"""Bugs found from outside (a schema fuzzer and hand-made bad inputs), each pinned by a test that
failed before its fix."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

from rideflow.api.problems import redis_outage
from rideflow.config import Settings
from rideflow.jobs.registry import JobContext
from rideflow.jobs.tasks import DriverRating, update_driver_rating
from rideflow.redis import keys
from rideflow.redis.scripts import Scripts
from tests.conftest import BLR
from tests.fleet import add_driver
from tests.integration.test_validation import GOOD, assert_problem, nothing_stored

U64_MAX = 2**64 - 1


def nested(depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _ in range(depth):
        out = {"a": out}
    return out


def reasons(problem: dict[str, object], field: str) -> list[str]:
    errors = problem["errors"]
    assert isinstance(errors, list)
    return [e["reason"] for e in errors if e["field"] == field]


# --- POST /v1/jobs: what an Idempotency-Key binds to -------------------------------------------


@pytest.mark.parametrize("key", [None, "k1"])
@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"subject": "hi", "n": 2**64}, "payload.n is an integer beyond 64 bits"),
        ({"subject": "hi", "n": -(2**63) - 1}, "payload.n is an integer beyond 64 bits"),
        (nested(300), "nests deeper than 32 levels"),
    ],
)
async def test_job_payload_that_cannot_be_stored_as_json_is_422_with_or_without_key(
    client: httpx.AsyncClient, redis: Redis, key: str | None, payload: object, words: str
) -> None:
    headers = {"Idempotency-Key": key} if key else {}
    r = await client.post(
        "/v1/jobs", json={"task": "send_email", "payload": payload}, headers=headers
    )
    problem = assert_problem(r, 422)
    assert any(words in reason for reason in reasons(problem, "payload")), problem
    await nothing_stored(redis)


async def test_job_payload_field_the_task_does_not_know_is_422(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    r = await client.post("/v1/jobs", json={"task": "send_email", "payload": {"too": "a@b"}})
    assert reasons(assert_problem(r, 422), "payload.too") == ["Extra inputs are not permitted"]
    await nothing_stored(redis)


async def test_idempotency_key_binds_to_the_request_not_the_order_of_its_keys(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "same"}
    first = {"task": "send_email", "payload": {"to": "a@b.c", "subject": "s"}}
    again = {"payload": {"subject": "s", "to": "a@b.c"}, "task": "send_email"}
    r1 = await client.post("/v1/jobs", json=first, headers=headers)
    r2 = await client.post("/v1/jobs", json=again, headers=headers)
    assert r1.status_code == r2.status_code == 202, r2.text
    assert r1.json()["job_id"] == r2.json()["job_id"]
    other = {"task": "send_email", "payload": {"to": "a@b.c", "subject": "other"}}
    assert_problem(await client.post("/v1/jobs", json=other, headers=headers), 409)


# --- bodies that are not JSON at all ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/rides", "/v1/jobs", "/v1/drivers", "/v1/deliveries"])
@pytest.mark.parametrize(
    "content",
    [b'{"task": "send_email", "x": "\xff\xfe"}', b"[" * 100_000 + b"]" * 100_000],
    ids=["not-utf8", "nested-100k"],
)
async def test_undecodable_body_is_the_same_422_on_every_route(
    client: httpx.AsyncClient, redis: Redis, path: str, content: bytes
) -> None:
    r = await client.post(path, content=content, headers={"content-type": "application/json"})
    assert reasons(assert_problem(r, 422), "body")
    await nothing_stored(redis)


# --- driver positions dated in the past ---------------------------------------------------------


@pytest.mark.parametrize(
    "recorded_at",
    [
        "0001-01-01T00:00:00+01:00",
        "1970-01-01T00:00:00Z",  # epoch 0, which the script read as "now"
        "later",
    ],
)
async def test_position_older_than_the_stale_window_is_422_and_the_driver_still_reads(
    client: httpx.AsyncClient, redis: Redis, settings: Settings, recorded_at: str
) -> None:
    await add_driver(client, "d1", BLR)
    before = (await client.get("/v1/drivers/d1")).json()
    if recorded_at == "later":
        old = datetime.now(UTC) - timedelta(seconds=settings.driver_stale_s + 5)
        recorded_at = old.isoformat()
    body = {"lat": BLR[0], "lng": BLR[1] + 0.001, "recorded_at": recorded_at}
    problem = assert_problem(await client.put("/v1/drivers/d1/location", json=body), 422)
    assert any("older than the stale window" in r for r in reasons(problem, "recorded_at"))
    r = await client.get("/v1/drivers/d1")
    assert r.status_code == 200 and r.json() == before
    assert await redis.zscore(keys.pool("blr"), "d1") is not None


async def test_batch_lists_an_old_position_as_refused_and_records_the_rest(
    client: httpx.AsyncClient,
) -> None:
    await add_driver(client, "d1", BLR)
    await add_driver(client, "d2", BLR)
    positions = [
        {"driver_id": "d1", "lat": BLR[0], "lng": BLR[1], "recorded_at": "0001-01-01T00:00:00Z"},
        {"driver_id": "d2", "lat": BLR[0], "lng": BLR[1]},
    ]
    r = await client.post("/v1/drivers/locations", json={"positions": positions})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["accepted"] == 1
    [refused] = result["rejected"]
    assert refused["index"] == 0 and "older than the stale window" in refused["reason"]
    assert (await client.get("/v1/drivers/d1")).status_code == 200


async def test_position_from_within_the_stale_window_is_still_recorded(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await client.post("/v1/drivers", json={"id": "d1", "name": "A"})).status_code == 201
    recent = datetime.now(UTC) - timedelta(seconds=settings.driver_stale_s / 2)
    body = {"lat": BLR[0], "lng": BLR[1], "recorded_at": recent.isoformat()}
    assert (await client.put("/v1/drivers/d1/location", json=body)).status_code == 204
    seen = (await client.get("/v1/drivers/d1")).json()["position"]["recorded_at"]
    assert abs(datetime.fromisoformat(seen) - recent) < timedelta(milliseconds=2)


# --- arguments Redis would refuse are refused at the edge; a Redis refusal is not an outage ------


@pytest.mark.parametrize(
    "query",
    ["before=nan", "before=inf", "before=-Infinity"],
)
async def test_job_list_cursor_must_be_a_finite_number(
    client: httpx.AsyncClient, query: str
) -> None:
    r = await client.get(f"/v1/jobs?status=pending&{query}")
    assert reasons(assert_problem(r, 422), "before"), r.text


@pytest.mark.parametrize("kind", ["rides", "deliveries"])
@pytest.mark.parametrize(
    "after",
    [
        "99999999999999999999999-0",
        f"{U64_MAX + 1}-0",
        f"0-{U64_MAX + 1}",
        f"{U64_MAX}-{U64_MAX}",
        "1-",
        "-1-0",
    ],
)
async def test_event_cursor_must_be_a_stream_id_redis_accepts(
    client: httpx.AsyncClient, kind: str, after: str
) -> None:
    r = await client.get(f"/v1/{kind}/blr-x/events", params={"after": after})
    assert reasons(assert_problem(r, 422), "after"), r.text


async def test_greatest_valid_event_cursor_reads_nothing_after_it(
    client: httpx.AsyncClient,
) -> None:
    ride_id = (await client.post("/v1/rides", json=GOOD)).json()["ride_id"]
    r = await client.get(f"/v1/rides/{ride_id}/events", params={"after": f"{U64_MAX}-0"})
    assert r.status_code == 200 and r.json()["events"] == [], r.text
    r = await client.get(f"/v1/rides/{ride_id}/events", params={"after": "0-0"})
    assert [e["status"] for e in r.json()["events"]] == ["QUEUED"]


async def test_redis_refusing_a_command_is_500_not_a_retryable_503(
    client: httpx.AsyncClient, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # A key of the wrong type stands for any command this server gets wrong: no retry cures it.
    await redis.set(keys.order("blr", "blr-broken"), "not a hash")
    with caplog.at_level(logging.ERROR, "rideflow.api.problems"):
        r = await client.get("/v1/rides/blr-broken")
    assert_problem(r, 500)
    assert "Retry-After" not in r.headers
    assert any("WRONGTYPE" in str(rec.exc_info[1]) for rec in caplog.records if rec.exc_info)


@pytest.fixture
async def out_of_memory(redis: Redis) -> AsyncIterator[None]:
    await redis.config_set("maxmemory", "1")
    await redis.config_set("maxmemory-policy", "noeviction")
    try:
        yield
    finally:
        await redis.config_set("maxmemory", "0")


@pytest.mark.single_redis("it sets maxmemory on one server")
async def test_redis_refusing_writes_is_503_with_retry_after(
    client: httpx.AsyncClient, out_of_memory: None
) -> None:
    r = await client.post("/v1/rides", json=GOOD)
    problem = assert_problem(r, 503)
    assert "refusing work" in str(problem["detail"]) and r.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (ConnectionError("Connection refused"), True),
        (TimeoutError("Timeout reading from socket"), True),
        (BusyLoadingError("Redis is loading the dataset in memory"), True),
        (ReadOnlyError("You can't write against a read only replica."), True),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), True),
        # The pipelined client raises plain ResponseErrors, known by their prefix.
        (ResponseError("LOADING Redis is loading the dataset in memory"), True),
        (ResponseError("MISCONF Redis is configured to save RDB snapshots"), True),
        (ResponseError("ERR Invalid stream ID specified as stream command argument"), False),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), False),
    ],
)
def test_which_redis_errors_are_an_outage(exc: Exception, outage: bool) -> None:
    assert redis_outage(exc) is outage  # type: ignore[arg-type]


# --- the rating a driver registered with ----------------------------------------------------------


async def test_registered_rating_counts_as_a_prior_of_five_ratings(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    await add_driver(client, "rated", BLR, rating=5.0)
    ctx = JobContext(
        "job-1", 1, redis, Scripts.register(redis), settings, logging.getLogger("test")
    )
    result = await update_driver_rating(DriverRating(driver_id="rated", rating=1), ctx)
    assert result == {"driver_id": "rated", "rating": 4.33, "ratings": 1}  # (5 x 5 + 1) / 6
    ctx = JobContext(
        "job-2", 1, redis, Scripts.register(redis), settings, logging.getLogger("test")
    )
    result = await update_driver_rating(DriverRating(driver_id="rated", rating=2), ctx)
    assert result == {"driver_id": "rated", "rating": 4.0, "ratings": 2}  # (25 + 1 + 2) / 7
    assert (await client.get("/v1/drivers/rated")).json()["rating"] == 4.0


# --- the OpenAPI document describes errors as they are sent --------------------------------------


async def test_openapi_documents_every_error_as_problem_json(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "Problem" in schemas
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            answers = op["responses"]
            errors = {s: a for s, a in answers.items() if s[0] in "45"}
            assert "413" in errors, where
            if path != "/healthz":
                assert "503" in errors and "Retry-After" in errors["503"]["headers"], where
            if not path.startswith(("/healthz", "/readyz")):
                assert "429" in errors, where
            if op.get("parameters") or op.get("requestBody"):
                assert "422" in errors, where
            if op.get("security"):
                assert {"401", "403"} <= set(errors), where
            for status, answer in errors.items():
                content = answer["content"]
                assert list(content) == ["application/problem+json"], (where, status)
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }, (where, status)
    stats = spec["paths"]["/v1/jobs/stats"]["get"]["responses"]
    assert set(stats) == {"200", "401", "403", "413", "429", "503"}
