"""Trip PINs passing from a customer to their driver at the pickup (rides) or the door
(deliveries): the customer's app is sent the PIN over its socket, and the driver is told it in
person. In the simulation that hand-over is this board."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Fetch = Callable[[], Awaitable[str | None]]


class PinBoard:
    def __init__(self) -> None:
        self._pins: dict[str, asyncio.Future[str]] = {}
        self._fetch: dict[str, Fetch] = {}

    def _future(self, order_id: str) -> asyncio.Future[str]:
        if order_id not in self._pins:
            self._pins[order_id] = asyncio.get_running_loop().create_future()
        return self._pins[order_id]

    def owner(self, order_id: str, fetch: Fetch) -> None:
        """The customer of `order_id` reads their order's PIN with `fetch` when asked."""
        self._fetch[order_id] = fetch

    def put(self, order_id: str, pin: str) -> None:
        """The customer's app was sent the PIN."""
        future = self._future(order_id)
        if not future.done():
            future.set_result(pin)

    async def get(self, order_id: str, wait_s: float = 10.0) -> str | None:
        """The PIN, as the customer says it: pushed to their app, else read from their order."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(self._future(order_id)), wait_s)
        fetch = self._fetch.get(order_id)
        return await fetch() if fetch else None

    def forget(self, order_id: str) -> None:
        self._pins.pop(order_id, None)
        self._fetch.pop(order_id, None)
