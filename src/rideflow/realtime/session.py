"""One connected socket: its caller, a bounded send queue drained by one sender task, and what
it is subscribed to. Everything that reaches the client goes through `send`, which never waits:
a client that falls behind fills its queue and is closed with 1013, so memory never grows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from starlette.websockets import WebSocket

from rideflow.auth.principal import Principal, Role
from rideflow.metrics.families import WS_SLOW_CLOSED
from rideflow.realtime.protocol import Close, encode

log = logging.getLogger("rideflow.realtime")
CLOSE_WAIT_S = 10.0
"""How long closing a socket may wait for its client to take the close frame."""
FELL_BEHIND = "the client fell behind: its send queue is full; reconnect and resume with `after`"

EventKey = tuple[int, int]


class Session:
    """A socket's state; the hub routes to it, the gateway reads from it."""

    def __init__(self, ws: WebSocket, principal: Principal, queue_size: int) -> None:
        self.ws, self.principal, self.limit = ws, principal, queue_size
        self.queue: deque[str] = deque()
        self.writer: asyncio.Task[None] | None = None
        """Writes the queue out while it holds anything; an idle socket holds no task."""
        self.orders: dict[str, EventKey | None] = {}
        """Subscribed orders -> the id of the last event sent (events at or before it are
        dropped: the replay/live seam never duplicates)."""
        self.replaying: dict[str, list[tuple[EventKey, str]]] = {}
        """Orders being replayed -> live events that arrived meanwhile, sent after the replay."""
        self.cities: set[str] = set()
        self.fix_sent: dict[str, float] = {}
        """Order -> when its driver's position was last sent (monotonic s), for the throttle."""
        self.missed = 0
        """Pings sent since the last pong."""
        self.offered: str | None = None
        """The last offer pushed (a driver holds one at a time): the connect-time read of a
        pending offer and the live event of the same offer send it once between them."""
        self.ending: tuple[Close, str] | None = None
        self.closer: asyncio.Task[None] | None = None

    @property
    def subject(self) -> str:
        return self.principal.subject

    @property
    def role(self) -> Role:
        return self.principal.role

    def send(self, text: str) -> bool:
        """Queue a message; False (and the socket is closing with 1013) when the queue is full."""
        if self.ending is not None:
            return False
        if len(self.queue) >= self.limit:
            WS_SLOW_CLOSED.inc()
            self.end(Close.TRY_AGAIN_LATER, FELL_BEHIND)
            return False
        self.queue.append(text)
        if self.writer is None:
            self.writer = asyncio.create_task(self._write(), name="ws-writer")
        return True

    def send_offer(self, offer_id: str, text: str) -> None:
        """An offer, unless this one was pushed already."""
        if offer_id != self.offered:
            self.offered = offer_id
            self.send(text)

    def send_event(self, order_id: str, key: EventKey, text: str) -> None:
        """An event of a subscribed order, at most once and in id order."""
        buffered = self.replaying.get(order_id)
        if buffered is not None:
            buffered.append((key, text))
            return
        last = self.orders.get(order_id)
        if last is not None and key <= last:
            return
        self.orders[order_id] = key
        self.send(text)

    def send_fix(self, order_id: str, text: str, every_s: float) -> None:
        """A tracked driver's position, at most once per `every_s` for each order."""
        now = time.monotonic()
        if now - self.fix_sent.get(order_id, -every_s) < every_s:
            return
        self.fix_sent[order_id] = now
        self.send(text)

    async def _write(self) -> None:
        try:
            with contextlib.suppress(Exception):  # the client went away: the receiver sees it
                while self.queue:
                    # Counted in the queue until written: a write the client does not take
                    # keeps the queue from draining, and it fills.
                    await self.ws.send_text(self.queue[0])
                    self.queue.popleft()
        finally:
            self.writer = None

    async def drained(self) -> None:
        """Wait until everything queued so far has been written to the socket."""
        while self.writer is not None and self.ending is None:
            await asyncio.wait([self.writer])

    def end(self, code: Close, reason: str) -> None:
        """Close the socket with `code`: nothing more is queued, what is queued is dropped, and
        the close frame follows what the transport already holds."""
        if self.ending is not None:
            return
        self.ending = (code, reason)
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.cancel()
        self.queue.clear()
        self.closer = asyncio.create_task(self._close(code, reason, writer), name="ws-closer")

    async def _close(self, code: Close, reason: str, writer: asyncio.Task[None] | None) -> None:
        if writer is not None:
            with contextlib.suppress(BaseException):
                await writer
        # A client that reads nothing never takes the frame; uvicorn's own keepalive drops its
        # connection then, and nothing more is held for it here.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self.ws.close(code, reason)

    async def stop(self) -> None:
        """The client has gone: end the tasks."""
        for task in (self.writer, self.closer):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


def ping(n: int) -> str:
    return encode("ping", n, {})
