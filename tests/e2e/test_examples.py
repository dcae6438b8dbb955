"""The example clients, run as a newcomer runs them (`python examples/driver.py`, `python
examples/customer.py`) against a real API process and dispatcher: the driver registers, goes
online and is pushed the offer; the customer registers, requests a ride, watches it live and is
given the trip PIN, which the driver then types in."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rideflow.config import Settings
from tests.servers import Service

EXAMPLES = Path(__file__).parents[2] / "examples"
WAIT_S = 30.0


async def line_matching(proc: subprocess.Popen[str], pattern: str, seen: list[str]) -> str:
    """The next line of `proc`'s output matching `pattern` (the lines read are kept)."""

    def read() -> str:
        assert proc.stdout is not None
        while line := proc.stdout.readline():
            seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"ended without {pattern!r}:\n{''.join(seen)}")

    async with asyncio.timeout(WAIT_S):
        return await asyncio.to_thread(read)


def example(name: str, url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), "--url", url, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
async def test_a_driver_and_a_customer_run_a_ride_with_the_example_clients(
    settings: Settings, services: Callable[..., Service]
) -> None:
    api = services("api", settings)
    services("dispatcher", settings)
    url = f"http://127.0.0.1:{api.port}"
    password = ("--password", "correct horse battery")
    driver = example("driver.py", url, "--email", "rohit@example.com", *password)
    customer: subprocess.Popen[str] | None = None
    driver_out: list[str] = []
    customer_out: list[str] = []
    try:
        await line_matching(driver, r"waiting for an offer", driver_out)
        customer = example("customer.py", url, "--email", "asha@example.com", *password)
        pin = re.findall(r"PIN: ([0-9]{4})", await line_matching(customer, r"PIN: ", customer_out))
        await line_matching(driver, r"trip PIN\?", driver_out)
        assert driver.stdin is not None
        driver.stdin.write(f"{pin[0]}\n")
        driver.stdin.flush()
        await line_matching(driver, r"COMPLETED", driver_out)
        await line_matching(customer, r"^COMPLETED", customer_out)
        assert await asyncio.to_thread(driver.wait, WAIT_S) == 0, "".join(driver_out)
        assert await asyncio.to_thread(customer.wait, WAIT_S) == 0, "".join(customer_out)
    finally:
        for proc in (driver, customer):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
    statuses = [line.split()[0] for line in customer_out if line[:1].isupper()]
    expected: list[Any] = ["QUEUED", "SEARCHING", "OFFERED", "ACCEPTED", "PIN:"]
    expected += ["DRIVER_ARRIVING", "PICKED_UP", "COMPLETED"]
    assert [s for s in statuses if s != "PIN:"] == [s for s in expected if s != "PIN:"]
