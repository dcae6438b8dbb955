"""A customer of the simulation: a CUSTOMER account with its socket open, placing the orders the
demand schedule gives it (rides, and food orders from the simulation's restaurants), following
each one live, and telling its driver the trip PIN its app was sent."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from rideflow.sim.client import Account, ApiError, send
from rideflow.sim.demand import Request
from rideflow.sim.pins import PinBoard

log = logging.getLogger("rideflow.sim")
FINAL = frozenset({"COMPLETED", "DELIVERED", "CANCELLED", "NO_DRIVER_FOUND"})
RECONNECT_S = 1.0


@dataclass(frozen=True, slots=True)
class Restaurant:
    id: str
    item_id: str


@dataclass
class Placed:
    """An order the simulation placed, and the last status its customer saw."""

    request: Request
    order_id: str
    customer: int
    path: str
    """`/v1/rides/<id>` or `/v1/deliveries/<id>`: where its steps and events are."""
    status: str = "QUEUED"
    last_event: str | None = None


@dataclass
class Tracker:
    """Every order placed, and what went wrong placing the others."""

    orders: dict[str, Placed] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    sent: list[Request] = field(default_factory=list)
    """The schedule as sent, in the order it was sent."""

    def live(self) -> list[Placed]:
        return [p for p in self.orders.values() if p.status not in FINAL]

    def by_status(self) -> Counter[str]:
        return Counter(p.status for p in self.orders.values())


class CustomerAgent:
    def __init__(
        self,
        index: int,
        account: Account,
        tracker: Tracker,
        pins: PinBoard,
        run_id: str,
        strategy: str | None,
        restaurants: list[Restaurant],
    ) -> None:
        self.index, self.account, self.tracker, self.pins = index, account, tracker, pins
        self.run_id, self.strategy, self.restaurants = run_id, strategy, restaurants
        self.mine: dict[str, Placed] = {}
        self.ws: ClientConnection | None = None
        self.connected = asyncio.Event()
        self._ids = itertools.count(1)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the socket open (reconnecting and resuming each order) until `stop`."""
        while not stop.is_set():
            try:
                async with self.account.socket() as ws:
                    self.ws = ws
                    for placed in self.mine.values():
                        if placed.status not in FINAL:
                            await self._follow(placed)
                    self.connected.set()
                    reading = asyncio.ensure_future(self._read(ws))
                    stopping = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    stopping.cancel()
                    if not reading.done():
                        reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await reading
            except (OSError, ConnectionClosed) as exc:
                log.warning("customer %s: socket lost (%s); reconnecting", self.index, exc)
            self.connected.clear()
            self.ws = None
            if not stop.is_set():
                await asyncio.sleep(RECONNECT_S)

    async def _read(self, ws: ClientConnection) -> None:
        async for text in ws:
            m = orjson.loads(text)
            kind, data = m["type"], m.get("data") or {}
            if kind == "ping":
                await send(ws, "pong", {}, m.get("id"))
            elif kind == "event":
                placed = self.mine.get(data.get("order_id", ""))
                if placed is not None:
                    placed.status, placed.last_event = data["status"], m["id"]
            elif kind == "pin":
                self.pins.put(data["order_id"], data["pin"])

    async def _follow(self, placed: Placed) -> None:
        if self.ws is None:
            return
        sub: dict[str, Any] = {"order_id": placed.order_id}
        if placed.last_event:
            sub["after"] = placed.last_event
        with contextlib.suppress(ConnectionClosed):
            await send(self.ws, "subscribe", sub)

    async def place(self, request: Request) -> None:
        """Place one order of the schedule and follow it."""
        self.tracker.sent.append(request)
        key = f"sim-{self.run_id}-{request.seq}"
        try:
            if request.kind == "ride":
                body: dict[str, Any] = {
                    "pickup": request.pickup.json(),
                    "dropoff": request.dropoff.json(),
                }
                if self.strategy:
                    body["strategy"] = self.strategy
                made = await self.account.call("POST", "/v1/rides", body, idempotency_key=key)
                order_id, path = made["ride_id"], f"/v1/rides/{made['ride_id']}"
            else:
                assert request.restaurant is not None
                r = self.restaurants[request.restaurant]
                body = {
                    "restaurant_id": r.id,
                    "items": [{"item_id": r.item_id, "qty": 1}],
                    "dropoff": request.dropoff.json(),
                }
                made = await self.account.call("POST", "/v1/food-orders", body, idempotency_key=key)
                order_id, path = made["order_id"], f"/v1/deliveries/{made['order_id']}"
        except ApiError as exc:
            self.tracker.refused[f"{exc.status} {exc.detail}"[:160]] += 1
            return
        placed = Placed(request, order_id, self.index, path)
        self.mine[order_id] = placed
        self.tracker.orders[order_id] = placed
        self.pins.owner(order_id, lambda: self._pin_of(placed))
        await self._follow(placed)

    async def _pin_of(self, placed: Placed) -> str | None:
        """The PIN as the customer's order shows it (when the socket's `pin` did not come)."""
        with contextlib.suppress(ApiError):
            view = await self.account.call("GET", placed.path)
            pin = view.get("pin")
            return str(pin) if pin else None
        return None

    async def cancel(self, placed: Placed) -> bool:
        """Cancel a live order (the end of the run); False when it had ended meanwhile."""
        try:
            await self.account.call("POST", f"{placed.path}/cancel")
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def events(self, placed: Placed) -> list[dict[str, Any]]:
        """Every transition of the order, as the API recorded them."""
        answer = await self.account.call("GET", f"{placed.path}/events")
        events: list[dict[str, Any]] = answer["events"]
        return events
