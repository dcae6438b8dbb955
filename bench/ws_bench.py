"""Figure 17 (issue 10): the WebSocket gateway of one API process.

10,000 drivers, each on a socket of their own to one `rideflow api` (this process holds the
clients): the API's resident memory per socket; offers made at 300/s (by the dispatcher's own
offer script, called from here) and how long each takes from OFFERED committed (its Redis time)
to the driver's client receiving it; each offer accepted over the socket at once, from the send
to ACCEPTED committed (Redis time; client and Redis share the machine's clock); then positions
sent over 500 of the sockets as fast as they are taken, counted when acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import sys
import time
from datetime import datetime
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench.harness import (
    CITY,
    HOST,
    Figure,
    Processes,
    Server,
    SetupError,
    cancel_live,
    free_port,
    latency_summary,
    make_fleet,
    rideflow_env,
    say,
    seed_drivers,
    services,
    start_api,
)
from rideflow.auth.principal import Role
from rideflow.auth.secret import jwt_secret
from rideflow.auth.tokens import AccessTokens
from rideflow.dispatch.matcher import Candidate
from rideflow.services import Services

SOCKETS = 10_000
CONNECT_PARALLEL = 200
OFFER_RATE = 300.0
OFFER_DURATION_S = 10.0
POSITION_SOCKETS = 500
POSITION_DURATION_S = 5.0
POSITION_WINDOW = 64
"""Positions a socket sends ahead of its acknowledgements (every `POSITION_ACK_EVERY`th one
carries an id and is acknowledged)."""
POSITION_ACK_EVERY = 16
SECRET = "bench-only-websocket-secret-" + "x" * 32
FIGURE_TIMEOUT_S = 600.0


def rss_kib(pid: int) -> int:
    """A process's resident set, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SetupError(f"no VmRSS for pid {pid}")


def raise_open_files() -> int:
    """The soft open-files limit raised to the hard one (the API inherits it); the new limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Driver:
    """One driver's socket and what it measured."""

    def __init__(self, driver_id: str, conn: ClientConnection) -> None:
        self.driver_id, self.conn = driver_id, conn
        self.offers: list[dict[str, Any]] = []
        self.push_ms: list[float] = []
        self.accept_ms: list[float] = []
        self.sent_at: dict[str, float] = {}
        self.acked = asyncio.Event()
        self.last_ack = 0
        self.accept = True

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for text in self.conn:
                received = time.time()
                m = orjson.loads(text)
                kind = m["type"]
                if kind == "offer":
                    created = datetime.fromisoformat(m["data"]["created_at"]).timestamp()
                    self.push_ms.append((received - created) * 1000)
                    if self.accept:
                        await self._accept(m["data"])
                elif kind == "ack" and isinstance(m["id"], str):
                    if m["id"].startswith("a"):
                        at = datetime.fromisoformat(m["data"]["at"]).timestamp()
                        self.accept_ms.append((at - self.sent_at.pop(m["id"])) * 1000)
                    elif m["id"].startswith("p"):
                        self.last_ack = int(m["id"][1:])
                        self.acked.set()
                elif kind == "ping":
                    await self.conn.send(orjson.dumps({"type": "pong", "id": m["id"]}).decode())

    async def _accept(self, offer: dict[str, Any]) -> None:
        mid = f"a{offer['offer_id']}"
        self.sent_at[mid] = time.time()
        data = {"offer_id": offer["offer_id"], "token": offer["token"]}
        await self.conn.send(orjson.dumps({"type": "offer.accept", "id": mid, "data": data}))


async def open_sockets(
    api: Server, tokens: AccessTokens, fleet: list[tuple[str, float, float]]
) -> list[Driver]:
    url = f"ws://{HOST}:{api.port}/v1/ws"
    drivers: list[Driver] = []

    async def one(driver_id: str) -> Driver:
        token = tokens.issue(driver_id, Role.DRIVER).token
        conn = await connect(
            url,
            subprotocols=["rideflow.v1", f"bearer.{token}"],  # type: ignore[list-item]
            open_timeout=60,
            ping_interval=None,
            max_size=2**20,
        )
        hello = orjson.loads(await conn.recv())
        if hello["type"] != "hello":
            raise SetupError(f"first message was not hello: {hello}")
        return Driver(driver_id, conn)

    for start in range(0, len(fleet), CONNECT_PARALLEL):
        chunk = fleet[start : start + CONNECT_PARALLEL]
        drivers += await asyncio.gather(*(one(d) for d, _, _ in chunk))
    return drivers


async def baseline_per_socket(procs: Processes, redis_url: str) -> float:
    """KiB of RSS per socket of the bare Starlette endpoint on the same uvicorn."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.ws_baseline_app:app", "--host", HOST]
    argv += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    argv += ["--ws", "websockets-sansio", "--ws-per-message-deflate", "false"]  # as `rideflow api`
    argv += ["--no-access-log", "--log-level", "warning"]
    server = procs.start("ws-baseline", argv, rideflow_env(redis_url), port)
    try:
        await wait_tcp(server)
        await asyncio.sleep(1.0)
        before = rss_kib(server.pid)
        conns: list[ClientConnection] = []
        url = f"ws://{HOST}:{port}/v1/ws"
        for _ in range(0, SOCKETS, CONNECT_PARALLEL):
            opened = await asyncio.gather(
                *(
                    connect(url, open_timeout=60, ping_interval=None)
                    for _ in range(CONNECT_PARALLEL)
                )
            )
            for conn in opened:
                await conn.recv()
            conns += opened
        await asyncio.sleep(1.0)
        after = rss_kib(server.pid)
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()
        return (after - before) / len(conns)
    finally:
        procs.stop(server)


async def wait_tcp(server: Server) -> None:
    deadline = time.monotonic() + 30
    while True:
        server.check_alive()
        try:
            _, writer = await asyncio.open_connection(HOST, server.port)
        except OSError:
            if time.monotonic() > deadline:
                raise SetupError(f"{server.name} never listened") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def make_offers(
    svc: Services, fleet: list[tuple[str, float, float]], count: int
) -> tuple[int, float]:
    """`count` orders, each offered to its own driver at OFFER_RATE; (offered, seconds)."""
    orders = []
    for driver_id, lat, lng in fleet[:count]:
        fields: dict[str, str | int | float] = {
            "customer": f"ws-c-{driver_id}",
            "pickup": f"{lat},{lng}",
            "dropoff": f"{lat + 0.01},{lng}",
            "strategy": "nearest",
        }
        stored = await svc.orders.enqueue(CITY, "ride", fields, direct=True)
        orders.append((stored.id, driver_id))
    started = time.perf_counter()
    offered = 0
    tasks = []

    async def offer(order_id: str, driver_id: str) -> None:
        nonlocal offered
        reserved = await svc.offers.create(CITY, order_id, "", [Candidate(driver_id, 50.0)])
        offered += reserved.outcome.value == "OFFERED"

    for i, (order_id, driver_id) in enumerate(orders):
        due = started + i / OFFER_RATE
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(offer(order_id, driver_id)))
    await asyncio.gather(*tasks)
    return offered, time.perf_counter() - started


async def send_positions(drivers: list[Driver], fleet: list[tuple[str, float, float]]) -> float:
    """Each socket sends positions, POSITION_WINDOW ahead of its acknowledgements, for
    POSITION_DURATION_S; positions acknowledged per second."""
    stop_at = time.perf_counter() + POSITION_DURATION_S
    counts: list[int] = []

    async def pump(driver: Driver, lat: float, lng: float) -> None:
        plain = orjson.dumps({"type": "position", "data": {"lat": lat, "lng": lng}}).decode()
        n = 0
        while time.perf_counter() < stop_at:
            n += 1
            if n % POSITION_ACK_EVERY == 0:
                body = {"type": "position", "id": f"p{n}", "data": {"lat": lat, "lng": lng}}
                await driver.conn.send(orjson.dumps(body).decode())
            else:
                await driver.conn.send(plain)
            while n - driver.last_ack > POSITION_WINDOW:
                driver.acked.clear()
                await driver.acked.wait()
        # The last acknowledged id counts everything before it (a socket's messages are taken
        # in order); what is still in flight at the end is not counted.
        counts.append(driver.last_ack)

    started = time.perf_counter()
    await asyncio.gather(
        *(pump(d, lat, lng) for d, (_, lat, lng) in zip(drivers, fleet, strict=False))
    )
    return sum(counts) / (time.perf_counter() - started)


async def figure_ws(procs: Processes, redis_url: str) -> Figure:
    async with asyncio.timeout(FIGURE_TIMEOUT_S):
        return await _figure(procs, redis_url)


async def all_answered(drivers: list[Driver], offered: int, within_s: float = 30.0) -> None:
    """Wait (at most `within_s`) until every offer was pushed and its acceptance answered."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        pushed = sum(len(d.push_ms) for d in drivers)
        answered = sum(len(d.accept_ms) for d in drivers)
        if pushed >= offered and answered >= offered:
            return
        await asyncio.sleep(0.1)


async def _figure(procs: Processes, redis_url: str) -> Figure:
    limit = raise_open_files()
    if limit < SOCKETS + 1000:  # per process: this one and the API each hold one end
        raise SetupError(f"open-files limit {limit} is too low for {SOCKETS} sockets")
    env = rideflow_env(
        redis_url, extra={"jwt_secret": SECRET, "ws_heartbeat_s": "600", "ws_send_queue": "256"}
    )
    fleet = make_fleet(SOCKETS, side_km=10, prefix="ws-d")
    figure = Figure()
    bare = await baseline_per_socket(procs, redis_url)
    say(f"  bare Starlette endpoint, same uvicorn: {bare:.1f} KiB per socket")
    async with services(redis_url, jwt_secret=SECRET) as svc:
        say(f"  seeding {len(fleet)} drivers: {await seed_drivers(svc, fleet):.1f} s")
        tokens = AccessTokens(svc.settings, jwt_secret(svc.settings))
        api = await start_api(procs, "api-ws", env)
        await asyncio.sleep(1.0)  # the process settles after its first requests
        before = rss_kib(api.pid)
        t0 = time.perf_counter()
        drivers = await open_sockets(api, tokens, fleet)
        connect_s = time.perf_counter() - t0
        await asyncio.sleep(1.0)
        after = rss_kib(api.pid)
        per_socket = (after - before) / len(drivers)
        say(
            f"  {len(drivers)} sockets in {connect_s:.1f} s; API RSS {before} -> {after} KiB, "
            f"{per_socket:.1f} KiB each"
        )
        readers = [asyncio.create_task(d.read()) for d in drivers]
        # The load generator's own full collections (10,000 connections live here too) would
        # show as push latency: its start-up objects are frozen and it collects nothing while
        # it measures.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            count = int(OFFER_RATE * OFFER_DURATION_S)
            offered, offer_s = await make_offers(svc, fleet, count)
            await all_answered(drivers, offered)
            push = [ms for d in drivers for ms in d.push_ms]
            accept = [ms for d in drivers for ms in d.accept_ms]
            push_s, accept_s = latency_summary(push), latency_summary(accept)
            say(f"  {offered} offers in {offer_s:.1f} s; push {push_s}; accept {accept_s}")
            free = [d for d in drivers[count:]][:POSITION_SOCKETS]
            rate = await send_positions(free, fleet[count:])
            say(f"  positions over {len(free)} sockets: {rate:,.0f}/s")
        finally:
            gc.enable()
            gc.unfreeze()
            for d in drivers:
                with contextlib.suppress(Exception):
                    await d.conn.close()
            for r in readers:
                r.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await cancel_live(svc)
            procs.stop(api)
    figure.raw = {
        "sockets": len(drivers),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "per_socket_kib": round(per_socket, 1),
        "connect_s": round(connect_s, 1),
        "offers": offered,
        "offers_pushed": len(push),
        "offers_accepted": len(accept),
        "push_ms": push_s,
        "accept_ms": accept_s,
        "positions_per_s": round(rate),
        "position_sockets": len(free),
        "bare_per_socket_kib": round(bare, 1),
    }
    figure.cells = verdicts(figure.raw, count)
    figure.samples["17. offer push, 10,000 sockets"] = push
    figure.samples["17. offer.accept -> ACCEPTED"] = accept
    return figure


def verdicts(raw: dict[str, Any], count: int) -> dict[str, tuple[str, bool | None]]:
    """The table's cells from what was measured."""
    push, accept = raw["push_ms"], raw["accept_ms"]
    offered, rate = raw["offers"], raw["positions_per_s"]
    return {
        "ws_sockets": (
            f"{raw['sockets']:,} sockets, {raw['per_socket_kib']:.1f} KiB each",
            raw["sockets"] >= SOCKETS and raw["per_socket_kib"] <= 50,
        ),
        "ws_offer_p99": (
            f"p99 {push['p99_ms']:.1f} ms (p50 {push['p50_ms']:.1f}; "
            f"{raw['offers_pushed']:,} of {offered:,} pushed)",
            raw["offers_pushed"] >= offered == count and push["p99_ms"] <= 20,
        ),
        "ws_accept_p99": (
            f"p99 {accept['p99_ms']:.1f} ms (p50 {accept['p50_ms']:.1f}; "
            f"{raw['offers_accepted']:,} accepted)",
            raw["offers_accepted"] >= offered and accept["p99_ms"] <= 10,
        ),
        "ws_positions": (f"{rate:,.0f} /s", rate >= 25_000),
        "ws_bare": (f"{raw['bare_per_socket_kib']:.1f} KiB per socket", None),
    }


def ws_note() -> str:
    """Figure 17's paragraph of the method."""
    return (
        f"17. **WebSocket gateway.** One `rideflow api` process (its server options:"
        f" `websockets-sansio`, no permessage-deflate unless `RIDEFLOW_WS_COMPRESSION`;"
        f" heartbeat 600 s so no ping is sent while measuring) and {SOCKETS:,} drivers seeded"
        f" online over 10 x 10 km, each opening a socket of its own from this process (the"
        f" `websockets` client, which offers compression as browsers do; {CONNECT_PARALLEL} at"
        f" a time, token in the subprotocol) and reading its `hello`. Memory: the API's RSS"
        f" (`/proc/<pid>/status`) 1 s after the sockets are open minus 1 s before the first,"
        f" over the sockets; the same for a bare Starlette endpoint (`bench/ws_baseline_app.py`:"
        f" accept, one message, read until closed) under the same uvicorn options, for"
        f" comparison. Offer push: {int(OFFER_RATE * OFFER_DURATION_S):,} orders, each offered"
        f" to its own driver by the dispatcher's own offer script (`Offers.create`) from this"
        f" process, open loop at {OFFER_RATE:g}/s; latency is the offer's `created_at` (Redis"
        f" `TIME` in the script) to the client's receipt (`time.time()`, one machine's clock)."
        f" Each driver answers `offer.accept` over the socket at once; that latency is the"
        f" send to the `at` of the ACCEPTED state in the reply (Redis `TIME`). Positions: over"
        f" {POSITION_SOCKETS} of the other sockets for {POSITION_DURATION_S:g} s, each socket"
        f" sending `position` messages as fast as it may with at most {POSITION_WINDOW} ahead of"
        f" its acknowledgements (every {POSITION_ACK_EVERY}th carries an id and is"
        f" acknowledged once its batch is in Redis); counted are the positions up to each"
        f" socket's last acknowledgement, over the elapsed time. All {SOCKETS:,} sockets stay"
        f" open throughout, and this process collects no garbage while it measures."
    )
