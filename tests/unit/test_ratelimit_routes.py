"""Which policy guards a request, and who the client is: no Redis (hits are counted in
tests/integration/test_ratelimit.py)."""

from __future__ import annotations

import ipaddress
from typing import cast

import pytest

from rideflow.api.middleware import client_address
from rideflow.api.ratelimit import RateLimiter, _route_pattern
from rideflow.config import RatePolicy, RateRoute, Settings
from rideflow.redis.scripts import Scripts


def limiter(settings: Settings) -> RateLimiter:
    """A limiter that can find policies; it would need scripts only to count hits."""
    return RateLimiter(cast(Scripts, None), settings)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/v1/rides", "/v1/rides", True),
        ("/v1/rides", "/v1/rides/", False),
        ("/v1/rides", "/v1/rides/blr-1", False),
        ("/v1/rides", "/x/v1/rides", False),
        ("/v1/drivers/{driver_id}/location", "/v1/drivers/d-1/location", True),
        ("/v1/drivers/{driver_id}/location", "/v1/drivers//location", False),
        ("/v1/drivers/{driver_id}/location", "/v1/drivers/a/b/location", False),
        ("/v1/drivers/{driver_id}/location", "/v1/drivers/d-1/location/x", False),
        ("/v1/offers/{offer_id}/{verb}", "/v1/offers/blr-x-y/accept", True),
        ("/v1/a.b", "/v1/a.b", True),
        ("/v1/a.b", "/v1/aXb", False),  # literal parts are escaped
        ("/v1/(x)+", "/v1/(x)+", True),
        ("/v1/(x)+", "/v1/xx", False),
    ],
)
def test_route_patterns(pattern: str, path: str, matches: bool) -> None:
    assert bool(_route_pattern(pattern).match(path)) is matches


@pytest.mark.parametrize(
    ("method", "path", "policy"),
    [
        ("POST", "/v1/rides", "create"),
        ("GET", "/v1/rides", "default"),  # the route names POST only
        ("POST", "/request-ride", "create"),
        ("PUT", "/v1/drivers/d-1/location", "positions"),
        ("GET", "/v1/drivers/d-1/location", "default"),
        ("POST", "/v1/drivers/locations", "positions"),
        ("GET", "/v1/rides/blr-1", "default"),
    ],
)
def test_the_default_routes_pick_their_policies(method: str, path: str, policy: str) -> None:
    assert limiter(Settings()).policy_for(method, path) == policy


def test_any_method_first_match_wins_and_no_default_means_unguarded() -> None:
    one = RatePolicy(limit=1, window_s=1)
    settings = Settings(
        rate_policies={"a": one, "b": one},
        rate_routes=[
            RateRoute(method="*", path="/v1/jobs/{job_id}", policy="a"),
            RateRoute(method="get", path="/v1/jobs/{job_id}", policy="b"),  # shadowed
            RateRoute(method="get", path="/v1/jobs", policy="b"),
        ],
        rate_default_policy=None,
    )
    found = limiter(settings)
    assert found.policy_for("GET", "/v1/jobs/j1") == "a"
    assert found.policy_for("DELETE", "/v1/jobs/j1") == "a"
    assert found.policy_for("GET", "/v1/jobs") == "b"  # the method is matched upper-case
    assert found.policy_for("POST", "/v1/jobs") is None
    assert found.policy_for("GET", "/healthz") is None


NETS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.1", "1.2.3.4", "203.0.113.1"),  # untrusted peer: header ignored
        ("10.0.0.5", None, "10.0.0.5"),
        ("10.0.0.5", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.5", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # only the right-most untrusted hop counts
        ("10.0.0.5", "1.2.3.4, 10.0.0.9", "1.2.3.4"),  # trusted hops are skipped
        ("10.0.0.5", "garbage", "10.0.0.5"),
        ("10.0.0.5", "1.2.3.4, garbage, 10.0.0.7", "10.0.0.7"),
        ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
        (None, "1.2.3.4", "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, NETS) == expected
