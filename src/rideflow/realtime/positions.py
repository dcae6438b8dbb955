"""Positions from sockets, recorded in batches: whatever arrived while the previous batch was
in Redis goes in the next one, one script call per city (the batch route's path), instead of one
call per message. No timer: a lone position is recorded at once."""

from __future__ import annotations

import asyncio
import contextlib

from rideflow.drivers.schemas import DriverLocation
from rideflow.drivers.store import Drivers, refusal

MAX_BATCH = 1_000
CROWDED = 4 * MAX_BATCH


class Positions:
    """One per API process, shared by its driver sockets."""

    def __init__(self, drivers: Drivers) -> None:
        self.drivers = drivers
        self.pending: list[tuple[DriverLocation, asyncio.Future[None]]] = []
        self.flusher: asyncio.Task[None] | None = None

    def submit(self, location: DriverLocation) -> asyncio.Future[None]:
        """Queue one position for the next batch; the future fails as
        `PUT /v1/drivers/{id}/location` refuses it. Batches are recorded in order, so a
        position's future is done only after every position submitted before it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((location, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush(), name="ws-positions")
        return future

    @property
    def crowded(self) -> bool:
        """More waits than a few batches: senders should wait for theirs (backpressure)."""
        return len(self.pending) > CROWDED

    async def record(self, location: DriverLocation) -> None:
        """Record one position; refused as `PUT /v1/drivers/{id}/location` refuses it."""
        await self.submit(location)

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            try:
                result = await self.drivers.record([loc for loc, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            refused = {r.index: r.reason for r in result.rejected}
            for i, (_, future) in enumerate(batch):
                if future.done():
                    continue  # its socket is gone
                if i in refused:
                    future.set_exception(refusal(refused[i]))
                else:
                    future.set_result(None)

    async def stop(self) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
            with contextlib.suppress(BaseException):
                await self.flusher
