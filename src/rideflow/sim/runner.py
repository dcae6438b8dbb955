"""A simulation run: set-up (restaurants through the admin API, accounts registered and logged
in), the demand schedule played against the clock, live progress, the tail (no new demand;
live orders finish, or are cancelled when the tail runs out), then the report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from rideflow.sim import demand, report
from rideflow.sim.client import Account, ApiError
from rideflow.sim.customer import CustomerAgent, Restaurant, Tracker
from rideflow.sim.demand import Area, Request
from rideflow.sim.driver import Behaviour, DriverAgent
from rideflow.sim.geo import LatLng
from rideflow.sim.pins import PinBoard

log = logging.getLogger("rideflow.sim")
T = TypeVar("T")
SETUP_CONCURRENCY = 4
"""Accounts registered and logged in at once: each costs the API an argon2 hash."""
STOP_WAIT_S = 30.0


@dataclass
class Options:
    base_url: str = "http://127.0.0.1:8000"
    city: str = "blr"
    center: LatLng = field(default_factory=lambda: LatLng(12.9716, 77.5946))
    area_km: float = 5.0
    drivers: int = 50
    customers: int = 0
    """0: one for every two drivers, at least 5."""
    rate_per_min: float = 30.0
    duration_s: float = 60.0
    tail_s: float = 60.0
    seed: int = 1
    strategy: str | None = None
    behaviour: Behaviour = field(default_factory=Behaviour)
    restaurants: int = 3
    food_share: float = 0.25
    admin_email: str | None = None
    admin_password: str | None = None

    @property
    def area(self) -> Area:
        return Area(self.center, self.area_km * 1000)

    @property
    def customer_count(self) -> int:
        return self.customers or max(5, self.drivers // 2)

    @property
    def restaurant_count(self) -> int:
        """Restaurants are made through the admin API: none without an ADMIN account."""
        return self.restaurants if self.admin_email else 0

    def schedule(self) -> list[Request]:
        return demand.schedule(
            self.seed,
            self.area,
            self.duration_s,
            self.rate_per_min,
            self.customer_count,
            self.food_share if self.restaurant_count else 0.0,
            self.restaurant_count,
        )


Progress = Callable[[str], None]


async def _bounded(limit: int, jobs: Iterable[Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


class Run:
    def __init__(self, options: Options, progress: Progress) -> None:
        self.o, self.say = options, progress
        self.run_id = secrets.token_hex(3)
        self.password = secrets.token_urlsafe(18)
        self.pins = PinBoard()
        self.tracker = Tracker()
        self.drivers: list[DriverAgent] = []
        self.customers: list[CustomerAgent] = []
        self.problems: list[str] = []
        self.interrupted = asyncio.Event()
        self.cancelled_at_end = 0

    async def main(self) -> dict[str, Any]:
        # Idle connections are dropped well before the server's keep-alive timeout (uvicorn: 5 s,
        # httpx's default expiry too): a request sent on a connection the server is closing
        # fails with a ReadError, which a make test run saw kill a simulated driver.
        limits = httpx.Limits(
            max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0
        )
        async with httpx.AsyncClient(base_url=self.o.base_url, timeout=30, limits=limits) as http:
            await self._check(http)
            restaurants = await self._restaurants(http)
            schedule = self.o.schedule()
            await self._accounts(http, restaurants)
            return await self._play(schedule)

    async def _check(self, http: httpx.AsyncClient) -> None:
        try:
            r = await http.get("/readyz")
        except httpx.TransportError as exc:
            raise SystemExit(
                f"no RideFlow at {self.o.base_url} ({exc}); start it: make run"
            ) from exc
        if r.status_code != 200:
            raise SystemExit(
                f"RideFlow at {self.o.base_url} is not ready: {r.status_code} {r.text}"
            )

    async def _restaurants(self, http: httpx.AsyncClient) -> list[Restaurant]:
        if not self.o.restaurant_count:
            return []
        assert self.o.admin_email and self.o.admin_password
        admin = Account(http, self.o.admin_email, self.o.admin_password)
        await admin.log_in()
        made = []
        sites = demand.restaurant_sites(self.o.seed, self.o.area, self.o.restaurant_count)
        for i, site in enumerate(sites):
            body = {"name": f"Sim Kitchen {i + 1} ({self.run_id})", "location": site.json()}
            r = await admin.call("POST", "/v1/restaurants", body)
            item = {"name": "Thali", "price_minor": 18000, "currency": "INR"}
            menu = await admin.call("POST", f"/v1/restaurants/{r['id']}/menu", item)
            made.append(Restaurant(r["id"], menu["id"]))
        self.say(f"set-up: {len(made)} restaurants made through the admin API")
        return made

    async def _accounts(self, http: httpx.AsyncClient, restaurants: list[Restaurant]) -> None:
        o = self.o
        domain = f"sim-{self.run_id}.example.com"
        self.say(
            f"set-up: registering and logging in {o.drivers} drivers and {o.customer_count} "
            f"customers (run {self.run_id})"
        )
        started = time.monotonic()
        spots = demand.hot_spots(o.seed, o.area)
        for i in range(o.drivers):
            account = Account(http, f"driver{i + 1}@{domain}", self.password)
            rng = random.Random(f"{o.seed}:driver:{i}")
            self.drivers.append(DriverAgent(i, account, rng, o.behaviour, o.area, spots, self.pins))
        for i in range(o.customer_count):
            account = Account(http, f"customer{i + 1}@{domain}", self.password)
            self.customers.append(
                CustomerAgent(
                    i, account, self.tracker, self.pins, self.run_id, o.strategy, restaurants
                )
            )

        async def driver(d: DriverAgent) -> None:
            await d.account.register(
                {
                    "role": "DRIVER",
                    "name": f"Sim Driver {d.index + 1}",
                    "vehicle": "Car",
                    "city": o.city,
                }
            )
            await d.account.log_in()

        async def customer(c: CustomerAgent) -> None:
            await c.account.register({"role": "CUSTOMER", "name": f"Sim Customer {c.index + 1}"})
            await c.account.log_in()

        await _bounded(
            SETUP_CONCURRENCY,
            [driver(d) for d in self.drivers] + [customer(c) for c in self.customers],
        )
        accounts = [d.account for d in self.drivers] + [c.account for c in self.customers]
        waited = max((a.waited_s for a in accounts), default=0.0)
        note = f" ({waited:.0f} s waiting out the login rate limit)" if waited else ""
        self.say(f"set-up: accounts ready in {time.monotonic() - started:.1f} s{note}")

    async def _play(self, schedule: list[Request]) -> dict[str, Any]:
        o = self.o
        stop_drivers, stop_customers = asyncio.Event(), asyncio.Event()
        drivers = [asyncio.create_task(d.run(stop_drivers)) for d in self.drivers]
        customers = [asyncio.create_task(c.run(stop_customers)) for c in self.customers]
        async with asyncio.timeout(30):
            await asyncio.gather(*(c.connected.wait() for c in self.customers))
        t0 = time.monotonic()
        ticker = asyncio.create_task(self._progress(t0, len(schedule)))
        placing: set[asyncio.Task[None]] = set()
        try:
            for request in schedule:
                wait = t0 + request.at_s - time.monotonic()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.interrupted.wait(), wait)
                if self.interrupted.is_set():
                    break
                task = asyncio.create_task(self.customers[request.customer].place(request))
                placing.add(task)
                task.add_done_callback(placing.discard)
            if not self.interrupted.is_set():
                await asyncio.sleep(max(0.0, t0 + o.duration_s - time.monotonic()))
            if placing:
                await asyncio.gather(*placing)
            placed = len(self.tracker.orders)
            self.say(f"demand over: {placed} orders placed; a tail of up to {o.tail_s:g} s")
            await self._tail()
        finally:
            stop_drivers.set()
            await self._stop(drivers, "drivers")
            ticker.cancel()
        result = await self._report(schedule, time.monotonic() - t0)
        stop_customers.set()
        await self._stop(customers, "customers")
        return result

    async def _tail(self) -> None:
        await self._settle(self.o.tail_s)
        live = self.tracker.live()
        if not live:
            return
        self.say(f"tail over: cancelling {len(live)} live orders")
        for placed in live:
            try:
                if await self.customers[placed.customer].cancel(placed):
                    self.cancelled_at_end += 1
            except ApiError as exc:
                self.problems.append(f"cancelling {placed.order_id}: {exc}")
        await self._settle(10.0)

    async def _settle(self, within_s: float) -> None:
        """Wait until no order is live, or `within_s` passed."""
        deadline = time.monotonic() + within_s
        while True:
            if not self.tracker.live() or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.25)

    async def _stop(self, tasks: list[asyncio.Task[None]], what: str) -> None:
        done, pending = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
        for task in pending:
            task.cancel()
        failed = [t.exception() for t in done if not t.cancelled() and t.exception()]
        if pending:
            self.problems.append(f"{len(pending)} {what} did not stop within {STOP_WAIT_S:g} s")
        for exc in failed[:3]:
            self.problems.append(f"one of the {what} failed: {exc!r}")
        if len(failed) > 3:
            self.problems.append(f"... and {len(failed) - 3} more {what} failed")

    async def _progress(self, t0: float, planned: int) -> None:
        while True:
            await asyncio.sleep(1.0)
            counts = self.tracker.by_status()
            states = [d.state for d in self.drivers]
            online = sum(1 for s in states if s != "off")
            busy = sum(1 for s in states if s in ("offered", "trip"))
            live = sum(v for k, v in counts.items() if k not in report.FINAL)
            done = counts["COMPLETED"] + counts["DELIVERED"]
            self.say(
                f"t={time.monotonic() - t0:5.0f}s orders {len(self.tracker.orders)}/{planned} "
                f"live {live} done {done} no-driver {counts['NO_DRIVER_FOUND']} "
                f"cancelled {counts['CANCELLED']} | drivers online {online} busy {busy}"
            )

    async def _report(self, schedule: list[Request], elapsed_s: float) -> dict[str, Any]:
        placed = list(self.tracker.orders.values())

        async def read(p: Any) -> report.OrderFigures:
            events = await self.customers[p.customer].events(p)
            return report.figures(events)

        figures = await _bounded(8, [read(p) for p in placed])
        answers = {
            "offers": 0,
            "accepted": 0,
            "rejected": 0,
            "ignored": 0,
            "lapsed": 0,
            "withdrawn": 0,
            "accept_refused": 0,
            "trips": 0,
        }
        for d in self.drivers:
            for k in answers:
                answers[k] += getattr(d.stats, k)
        sent = self.tracker.sent
        meta = {
            "run_id": self.run_id,
            "city": self.o.city,
            "seed": self.o.seed,
            "strategy": self.o.strategy,
            "drivers": self.o.drivers,
            "customers": self.o.customer_count,
            "rate_per_min": self.o.rate_per_min,
            "duration_s": self.o.duration_s,
            "time_scale": self.o.behaviour.time_scale,
            "elapsed_s": round(elapsed_s, 1),
            "interrupted": self.interrupted.is_set(),
            "demand": {
                "orders": len(schedule),
                "rides": sum(1 for r in schedule if r.kind == "ride"),
                "food": sum(1 for r in schedule if r.kind == "food"),
                "digest": demand.digest(schedule),
                "sent": len(sent),
                "sent_digest": demand.digest(sorted(sent, key=lambda r: r.seq)),
            },
            "refused": dict(self.tracker.refused),
            "cancelled_at_end": self.cancelled_at_end,
        }
        built = report.build(
            meta,
            figures,
            answers,
            sum(d.stats.online_s for d in self.drivers),
            sum(d.stats.busy_s for d in self.drivers),
        )
        trip_errors = [e for d in self.drivers for e in d.stats.trip_errors]
        built["trip_errors"] = len(trip_errors)
        built["problems"] = self.problems + trip_errors[:5]
        return built


async def simulate(options: Options, progress: Progress) -> dict[str, Any]:
    """Run a simulation; its report. Ctrl-C ends the demand early (the tail still runs)."""
    import signal

    run = Run(options, progress)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, run.interrupted.set)
        loop.add_signal_handler(signal.SIGTERM, run.interrupted.set)
    return await run.main()
