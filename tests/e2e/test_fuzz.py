"""The API fuzzed from its own OpenAPI document (schemathesis), against a live `rideflow api`:
no 500, and every status, content type and body as documented. Bounded and seeded so that it
runs the same cases in the same time on every run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from rideflow.api.app import create_app
from rideflow.config import Settings
from tests.auth import any_admin
from tests.conftest import env_of, settings_for
from tests.servers import ApiService, RedisServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
EXAMPLES_PER_OPERATION = 60


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiService]:
    """A live API of the module's own, on a Redis of its own (cases are not flushed between)."""
    directory: Path = tmp_path_factory.mktemp("fuzz")
    redis = RedisServer(directory).start()
    service = ApiService(env_of(settings_for(redis.url)), directory, name="fuzzed-api")
    try:
        yield service
    finally:
        service.stop()
        redis.stop()


# Loaded from the app in-process (the lazy `from_fixture` loader does not work with pytest 9);
# `test_the_fuzzed_document_is_the_served_one` checks it is the document the live API serves.
DOCUMENT = create_app(Settings(redis_url="redis://127.0.0.1:1/0")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(deterministic=True)


def test_the_fuzzed_document_is_the_served_one(api: ApiService) -> None:
    assert httpx.get(f"{api.url}/openapi.json").json() == DOCUMENT


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_as_documented(case: Any, api: ApiService) -> None:
    case.call_and_validate(base_url=api.url, checks=CHECKS, timeout=10, headers=any_admin())
