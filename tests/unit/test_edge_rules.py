"""The edge's rules without a server: which media types are JSON, who a request is counted
as, a role's policy, and the settings that would contradict themselves."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rideflow.api.middleware import header_token, json_media_type
from rideflow.api.ratelimit import client_key, scaled
from rideflow.auth.principal import Principal, Role
from rideflow.config import RatePolicy, Settings


@pytest.mark.parametrize(
    ("value", "json"),
    [
        (b"application/json", True),
        (b"application/json; charset=utf-8", True),
        (b'APPLICATION/JSON;Charset="UTF-8"', True),
        (b"application/problem+json", True),
        (b"application/vnd.rideflow.ride+json; charset=utf8", True),
        (b"application/json; charset=iso-8859-1", False),
        (b"text/plain", False),
        (b"text/plain; charset=utf-8", False),
        (b"application/x-www-form-urlencoded", False),
        (b"multipart/form-data; boundary=x", False),
        (b"text/json", False),
        (b"application/jsonp", False),
        (b"+json", False),
        (b"", False),
    ],
)
def test_json_media_types(value: bytes, json: bool) -> None:
    assert json_media_type(value) is json


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ([(b"authorization", b"Bearer abc.def.ghi")], "abc.def.ghi"),
        ([(b"authorization", b"bearer abc")], "abc"),
        ([(b"authorization", b"Basic dXNlcjpwdw==")], None),
        ([(b"authorization", b"Bearer")], None),
        ([(b"x-api-key", b"k")], None),
        ([], None),
    ],
)
def test_bearer_token(headers: list[tuple[bytes, bytes]], token: str | None) -> None:
    assert header_token(headers) == token


def test_client_keys() -> None:
    user = Principal(subject="cust-a", role=Role.CUSTOMER)
    service = Principal(subject="merchant-1", role=Role.CUSTOMER, kind="service")
    assert client_key(user, "203.0.113.7") == "user:cust-a"
    assert client_key(service, "203.0.113.7") == "ip:203.0.113.7"
    assert client_key(None, "2001:db8::1") == "ip:2001:db8::1"


def test_a_role_policy_scales_limit_and_burst() -> None:
    bucket = RatePolicy(algorithm="token_bucket", limit=20, window_s=1, burst=40)
    assert scaled(bucket, 10) == RatePolicy(
        algorithm="token_bucket", limit=200, window_s=1, burst=400
    )
    assert scaled(bucket, 1) is bucket
    assert scaled(bucket, 0.01).limit == 1  # never below one request


def test_settings_refuse_what_contradicts_itself() -> None:
    with pytest.raises(ValidationError, match="positive"):
        Settings(rate_role_multipliers={"ADMIN": 0})
    with pytest.raises(ValidationError, match="credentials"):
        Settings(cors_origins=["*"], cors_allow_credentials=True)
    assert Settings().rate_role_multipliers == {Role.ADMIN: 10.0}
    assert Settings().cors_origins == []
