"""Rate limits across real API processes: exactly the limit is admitted when two processes share
it under thousands of concurrent connections, and a spoofed `X-Forwarded-For` changes nothing."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from rideflow.config import Settings
from tests.integration.test_ratelimit import ALGORITHMS, limited
from tests.servers import raw_get


async def hammer(ports: list[int], hits: int, spoof: bool = False) -> Counter[int]:
    """Send `hits` requests at once, each on its own connection, spread over API processes."""
    gate = asyncio.Semaphore(1000)  # stay clear of the open-file limit

    async def one(i: int) -> int:
        headers: dict[str, str] = {}  # anonymous: one budget per address
        if spoof:
            headers["X-Forwarded-For"] = str(ipaddress.IPv4Address(random.getrandbits(32)))
        async with gate:
            return await raw_get(ports[i % len(ports)], "/v1/rides/blr-none", headers)

    return Counter(await asyncio.gather(*(one(i) for i in range(hits))))


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_exactly_the_limit_is_admitted_across_two_processes(
    settings: Settings, services: Callable[..., Any], algorithm: str
) -> None:
    # An hour-long window: nothing refills while the test runs, so the count must be exact.
    s = limited(settings, algorithm, limit=100, window_s=3600)
    apis = [services("api", s), services("api", s)]
    statuses = await hammer([a.port for a in apis], 2000)
    assert statuses == Counter({401: 100, 429: 1900}), statuses


@pytest.mark.slow
async def test_spoofed_forwarded_for_from_untrusted_peer_changes_nothing(
    settings: Settings, services: Callable[..., Any]
) -> None:
    s = limited(settings, "sliding_window", limit=100, window_s=3600)
    apis = [services("api", s), services("api", s)]
    statuses = await hammer([a.port for a in apis], 2000, spoof=True)
    assert statuses == Counter({401: 100, 429: 1900}), statuses
