"""A driver of the simulation: a DRIVER account with its socket open, moving along straight
segments at the city's speed, working shifts, answering offers after a human reaction time
(accept, reject or let lapse, with the configured odds), and driving each trip it accepts to
its end with the customer's trip PIN."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from rideflow.sim.client import Account, ApiError, send
from rideflow.sim.demand import Area, HotSpot
from rideflow.sim.geo import LatLng, distance_m, offset, toward
from rideflow.sim.pins import PinBoard

log = logging.getLogger("rideflow.sim")
REPLY_WAIT_S = 15.0
State = Literal["off", "idle", "offered", "trip"]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How every driver behaves (each draws its own choices from its own random stream)."""

    accept: float = 0.85
    reject: float = 0.10
    """The rest of the offers are ignored and lapse."""
    reaction_s: tuple[float, float] = (1.0, 4.0)
    speed_mps: float = 20 / 3.6
    time_scale: float = 10.0
    """Simulated seconds per real second: moves and shifts run this much faster."""
    tick_s: float = 1.0
    """A position is sent this often (real seconds)."""
    shift_s: float = 3_600.0
    break_s: float = 600.0
    """Mean shift and break lengths, simulated seconds."""


@dataclass
class DriverStats:
    offers: int = 0
    accepted: int = 0
    rejected: int = 0
    ignored: int = 0
    lapsed: int = 0
    withdrawn: int = 0
    accept_refused: int = 0
    trips: int = 0
    trip_errors: list[str] = field(default_factory=list)
    online_s: float = 0.0
    busy_s: float = 0.0


class DriverAgent:
    def __init__(
        self,
        index: int,
        account: Account,
        rng: random.Random,
        behaviour: Behaviour,
        area: Area,
        spots: list[HotSpot],
        pins: PinBoard,
    ) -> None:
        self.index, self.account, self.rng, self.b = index, account, rng, behaviour
        self.area, self.spots, self.pins = area, spots, pins
        self.stats = DriverStats()
        self.state: State = "off"
        self.pos = self._somewhere()
        self.target: LatLng | None = None
        self.arrived = asyncio.Event()
        self.offer: dict[str, Any] | None = None
        self.order_id: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._pause_until = 0.0
        self._busy_since = 0.0
        # The shift plan: most start on shift, part-way through it; the rest on a break.
        now = time.monotonic()
        if rng.random() < 0.85:
            self._switch_at = now + self._real(rng.uniform(0.2, 1.0) * behaviour.shift_s)
            self._on_shift = True
        else:
            self._switch_at = now + self._real(rng.uniform(0.0, 1.0) * behaviour.break_s)
            self._on_shift = False

    def _real(self, sim_s: float) -> float:
        return sim_s / self.b.time_scale

    def _somewhere(self) -> LatLng:
        """A point drivers gather at: near a hot spot, or anywhere in the area."""
        if self.spots and self.rng.random() < 0.6:
            s = self.rng.choices(self.spots, [h.weight for h in self.spots])[0]
            p = offset(s.at, self.rng.gauss(0, s.sigma_m * 2), self.rng.gauss(0, s.sigma_m * 2))
        else:
            r = self.area.radius_m * self.rng.random() ** 0.5
            p = offset(self.area.center, self.rng.uniform(-r, r), self.rng.uniform(-r, r))
        return (
            p
            if self.area.contains(p)
            else toward(p, self.area.center, distance_m(p, self.area.center) * 0.2)
        )

    # -- the socket ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Drive until `stop` is set and nothing is left in hand, then go offline."""
        async with self.account.socket() as ws, asyncio.TaskGroup() as tg:
            self.ws = ws
            self.tg = tg
            reader = tg.create_task(self._read(ws), name=f"driver{self.index}-read")
            try:
                await self._drive(stop)
            finally:
                if self.state != "off":
                    with contextlib.suppress(ApiError, TimeoutError, ConnectionClosed):
                        await self._go("offline")
                reader.cancel()

    async def request(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """A message with an id; its reply (`ack` or `error`)."""
        assert self.ws is not None
        mid = f"d{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[mid] = future
        try:
            await send(self.ws, kind, data, mid)
            return await asyncio.wait_for(future, REPLY_WAIT_S)
        finally:
            self._replies.pop(mid, None)

    async def _read(self, ws: ClientConnection) -> None:
        async for text in ws:
            m = orjson.loads(text)
            kind, data = m["type"], m.get("data") or {}
            if kind == "ping":
                await send(ws, "pong", {}, m.get("id"))
            elif kind in ("ack", "error"):
                future = self._replies.get(str(m.get("id")))
                if future is not None and not future.done():
                    future.set_result(m)
                elif kind == "error":
                    log.debug("driver %s: %s", self.index, data.get("detail"))
            elif kind == "offer":
                self._on_offer(data)
            elif kind == "offer.withdrawn":
                self._on_withdrawn(data)
            elif kind == "event" and data.get("status") == "CANCELLED":
                self._on_cancelled(data)

    # -- offers -------------------------------------------------------------------------------

    def _on_offer(self, offer: dict[str, Any]) -> None:
        if self.state != "idle":
            return  # pushed twice, or after going off shift: it lapses or was declined
        self.stats.offers += 1
        self.state, self.offer = "offered", offer
        roll = self.rng.random()
        action = (
            "accept"
            if roll < self.b.accept
            else "reject"
            if roll < self.b.accept + self.b.reject
            else "ignore"
        )
        delay = self.rng.uniform(*self.b.reaction_s)
        self.task = self.tg.create_task(self._answer(offer, action, delay))

    async def _answer(self, offer: dict[str, Any], action: str, delay: float) -> None:
        await asyncio.sleep(delay)
        if action == "ignore":
            self.stats.ignored += 1
            return  # the offer lapses at its deadline: `offer.withdrawn` comes then
        reply = {"offer_id": offer["offer_id"], "token": offer["token"]}
        try:
            answer = await self.request(f"offer.{action}", reply)
        except (TimeoutError, ConnectionClosed):
            answer = {"type": "error", "data": {"detail": "no reply"}}
        if answer["type"] != "ack":
            self.stats.accept_refused += 1
            self._idle()
            return
        if action == "reject":
            self.stats.rejected += 1
            self._idle()
            return
        self.stats.accepted += 1
        self.state, self.order_id = "trip", offer["order_id"]
        self._busy_since = time.monotonic()
        await self._trip(offer)

    def _on_withdrawn(self, data: dict[str, Any]) -> None:
        if self.offer is None or data.get("offer_id") != self.offer.get("offer_id"):
            return
        self.stats.withdrawn += 1
        if data.get("outcome") == "EXPIRED":
            self.stats.lapsed += 1
            # Lapses in a row take a driver offline: the app offers to go online again.
            self.tg.create_task(self._back_online())
        if self.task is not None and self.state in ("offered", "trip"):
            self.task.cancel()
        self._idle()

    def _on_cancelled(self, data: dict[str, Any]) -> None:
        """The customer cancelled the order this driver is driving: the trip ends here."""
        if self.state == "trip" and data.get("order_id") == self.order_id:
            self.stats.withdrawn += 1
            if self.task is not None:
                self.task.cancel()
            self._idle()

    async def _back_online(self) -> None:
        if self._on_shift and self.state != "off":
            with contextlib.suppress(ApiError, TimeoutError, ConnectionClosed):
                await self._go("online")

    def _idle(self) -> None:
        if self.state == "trip":
            self.stats.busy_s += time.monotonic() - self._busy_since
        if self.state != "off":
            self.state = "idle"
        self.offer, self.order_id, self.target = None, None, None

    # -- a trip -------------------------------------------------------------------------------

    async def _trip(self, offer: dict[str, Any]) -> None:
        order_id, kind = offer["order_id"], offer["kind"]
        base = f"/v1/rides/{order_id}" if kind == "ride" else f"/v1/deliveries/{order_id}"
        try:
            await self.account.call("POST", f"{base}/arriving", {})
            await self._drive_to(LatLng(**offer["pickup"]))
            pin = await self.pins.get(order_id) if kind == "ride" else None
            await self.account.call("POST", f"{base}/picked-up", {"pin": pin} if pin else {})
            await self._drive_to(LatLng(**offer["dropoff"]))
            if kind == "ride":
                await self.account.call("POST", f"{base}/complete", {})
            else:
                pin = await self.pins.get(order_id)
                await self.account.call("POST", f"{base}/delivered", {"pin": pin} if pin else {})
            self.stats.trips += 1
        except ApiError as exc:
            # The customer cancelled, typically (at the end of a run): the trip ends here.
            self.stats.trip_errors.append(str(exc))
        finally:
            self.pins.forget(order_id)
            self._idle()

    async def _drive_to(self, where: LatLng) -> None:
        self.arrived.clear()
        self.target = where
        await self.arrived.wait()

    # -- moving and shifts --------------------------------------------------------------------

    async def _go(self, status: str) -> None:
        if status == "online":
            await self.request("position", self.pos.json())
        reply = await self.request("status", {"status": status})
        if reply["type"] != "ack":
            raise ApiError("WS", "status", int(reply["data"].get("status", 0)), str(reply["data"]))
        if status == "online" and self.state == "off":
            self.state = "idle"
        elif status == "offline":
            self.state = "off"

    async def _drive(self, stop: asyncio.Event) -> None:
        if self._on_shift:
            await self._go("online")
        last = time.monotonic()
        while True:
            now = time.monotonic()
            dt, last = now - last, now
            if self.state != "off":
                self.stats.online_s += dt
            if stop.is_set() and self.state in ("off", "idle"):
                return
            if now >= self._switch_at and self.state in ("off", "idle"):
                await self._shift_change(now, stop)
            if self.state != "off":
                self._move(dt, now)
                assert self.ws is not None
                await send(self.ws, "position", self.pos.json())
            await asyncio.sleep(self.b.tick_s)

    async def _shift_change(self, now: float, stop: asyncio.Event) -> None:
        self._on_shift = not self._on_shift
        mean = self.b.shift_s if self._on_shift else self.b.break_s
        self._switch_at = now + self._real(self.rng.uniform(0.5, 1.5) * mean)
        if stop.is_set():
            return
        try:
            await self._go("online" if self._on_shift else "offline")
        except (ApiError, TimeoutError) as exc:
            log.warning("driver %s: could not change shift: %s", self.index, exc)

    def _move(self, dt: float, now: float) -> None:
        step = self.b.speed_mps * self.b.time_scale * dt
        if self.state == "trip" and self.target is not None:
            self.pos = toward(self.pos, self.target, step)
            if self.pos == self.target:
                self.arrived.set()
        elif self.state == "idle":
            # Cruising between spots at half speed, with a pause at each.
            if self.target is None:
                if now >= self._pause_until:
                    self.target = self._somewhere()
            else:
                self.pos = toward(self.pos, self.target, step / 2)
                if self.pos == self.target:
                    self.target = None
                    self._pause_until = now + self._real(self.rng.uniform(60.0, 300.0))
