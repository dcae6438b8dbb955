"""The one stream-consumer runner: every process that consumes Redis streams through a consumer
group (the dispatcher, the job worker, the recorder) is a `Handler` run by a `Runner`.

The runner owns the group's life cycle (created from id 0, BUSYGROUP ignored, recreated after
NOGROUP), the read loop feeding a bounded in-process queue, claim renewal of entries in hand,
`XAUTOCLAIM` of entries idle past the claim timeout, dead-lettering after `max_deliveries`,
trimming below the oldest unacknowledged entry, guarded loops, burst mode and the graceful stop.

After Redis trouble, the consumer re-reads its own pending entries (id 0) as soon as Redis
answers again: what it held at an outage is handled at once, not after the claim timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rideflow.metrics.families import redis_error
from rideflow.redis.connections import initialized, slot_groups
from rideflow.redis.streams import Entry, ensure_group, parse_read, trim_acknowledged

log = logging.getLogger("rideflow.runner")

READ_BLOCK_MS = 1000
BURST_BLOCK_MS = 200
ERROR_PAUSE_S = 0.5
TRIM_EVERY_S = 5.0
PAGE = 100
STOP_WAIT_S = 10.0

Loop = Callable[[], Awaitable[None]]
WORKER: ContextVar[int] = ContextVar("WORKER", default=-1)
"""The number of the runner's worker task `handle` runs in (for log lines)."""


class Poison(Exception):
    """Raised by a handler for an entry that can never be handled: dead-lettered at once."""


def consumer_name() -> str:
    """A name no other consumer has, now or after a restart of this one."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class Handler:
    """What a consumer does with entries; the defaults suit a handler that does nothing more
    than `handle`. Subclasses set the fields and override the hooks they need."""

    name: str  # in log lines
    group: str
    streams: Sequence[str]
    claim_idle_ms: int
    workers: int = 1  # tasks calling `handle` at once
    batch: int = 1  # most entries per `handle` call
    prioritized: bool = False  # read the streams in order, earlier ones first
    max_deliveries: int | None = None  # dead-letter an entry delivered this often; None: never
    grace_s: float = 5.0  # stopping: time to finish work in hand
    counts: Counter[str] = field(default_factory=Counter)

    async def handle(self, batch: list[Entry]) -> None:
        """Do the work of `batch`; an entry is acknowledged by whatever settles it."""
        raise NotImplementedError

    async def start(self, runner: Runner) -> None:
        """Start the handler's own loops (with `runner.spawn`)."""

    async def room(self) -> int:
        """Wait until more entries fit (counting the runner's `in_hand`); how many to read."""
        return self.batch * self.workers

    def take(self, entries: list[Entry]) -> list[Entry]:
        """Called by the reader with what it just read: start at once (tasks of the handler's
        own, no waiting) what needs no round trip first, and return the rest, which goes to
        `handle` as usual. What is taken must show in `holding`."""
        return entries

    def holding(self) -> Iterable[tuple[str, str]]:
        """(stream, id) of entries still worked on after `handle` returned: claims renewed."""
        return ()

    async def idle(self) -> bool:
        """Burst mode: nothing of the handler's own is left to do (beyond the streams)."""
        return True

    async def drain(self) -> None:
        """Stopping: finish or give back the work in hand, within `grace_s`."""

    async def failed(self, entry: Entry, exc: Exception) -> None:
        """`handle` failed on work that came from no stream entry (`entry.id == ''`)."""

    def dead_fields(self, entry: Entry, error: str) -> dict[str, str]:
        """The dead-letter stream entry of `entry`."""
        return {**entry.fields, "entry": entry.id, "error": error}

    async def dead(self, entry: Entry, error: str) -> None:
        """After `entry` went to the dead letters: settle what it was about (it is then
        acknowledged)."""

    def dead_stream(self, stream: str) -> str:
        """Where the dead letters of `stream` go."""
        return f"{stream}:dead"


class Runner:
    """Runs one handler: reading, reclaiming, renewing, trimming, stopping."""

    def __init__(
        self, redis: Redis, handler: Handler, *, burst: bool = False, consumer: str = ""
    ) -> None:
        self.redis, self.handler, self.burst = redis, handler, burst
        self.consumer = consumer or consumer_name()
        self.counts = handler.counts
        self.queue: asyncio.Queue[Entry] = asyncio.Queue(handler.workers * handler.batch * 2)
        # Entries read and not yet handled, by (stream, id): their claims are renewed and a
        # re-read after an outage skips them.
        self.in_hand: dict[tuple[str, str], Entry] = {}
        self.tasks: list[asyncio.Task[None]] = []
        # Redis trouble seen (a count) and the trouble a re-read of our own entries has covered.
        self.trouble, self.reread_upto = 0, 0
        # The stop's phases, checked by every loop at each turn: redis-py can swallow a
        # cancellation that lands in a command (redis/redis-py#2028, #2551), and a loop that
        # missed its cancel then ends at its next turn instead of stalling the stop.
        self.reading = self.working = self.live = True

    def spawn(self, loop: Loop, name: str = "") -> asyncio.Task[None]:
        """Run `loop` guarded until the runner stops (or until it returns)."""
        task = asyncio.create_task(self._guarded(loop), name=name or loop.__name__)
        self.tasks.append(task)
        return task

    async def submit(self, entry: Entry) -> None:
        """Hand work to the handler's workers (from a loop of the handler's own)."""
        if entry.id:
            self.in_hand[(entry.stream, entry.id)] = entry
        await self.queue.put(entry)

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        """Work until `stop` is set (or, in burst mode, until idle), then stop gracefully: read
        nothing more, let work in hand finish within the grace period, leave the rest
        unacknowledged for others, log one summary line."""
        h = self.handler
        await initialized(self.redis)
        await self._ensure_groups()
        reader = asyncio.create_task(self._guarded(self._read), name="read")
        reclaimer = asyncio.create_task(self._guarded(self._reclaim), name="reclaim")
        workers = [asyncio.create_task(self._work(i), name=f"work{i}") for i in range(h.workers)]
        self.spawn(self._renew)
        self.spawn(self._trim)
        await h.start(self)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([reader, stopping], return_when=asyncio.FIRST_COMPLETED)
        self.reading = False
        for task in (reader, reclaimer, stopping):
            task.cancel()
        await asyncio.wait([reader, reclaimer], timeout=STOP_WAIT_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(h.grace_s):
                await self.queue.join()
        self.working = False
        for task in workers:
            task.cancel()  # unfinished entries stay unacknowledged: others reclaim them
        await asyncio.wait(workers, timeout=STOP_WAIT_S)
        await h.drain()
        self.live = False
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=STOP_WAIT_S)
        await self.redis.aclose()
        summary = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing done"
        log.info("%s %s stopped: %s", h.name, self.consumer, summary)
        return self.counts

    async def _guarded(self, loop: Loop) -> None:
        """Run a loop; Redis trouble pauses it (then the group is made sure of, since Redis may
        have come back without it), other errors are logged and the loop restarted."""
        while True:
            try:
                await loop()
                return
            except RedisError as exc:
                if not self.live:
                    return
                self.counts["redis_errors"] += 1
                redis_error(exc)
                self.trouble += 1
                log.warning("%s: %s; retrying", loop.__name__, exc)
                await asyncio.sleep(ERROR_PAUSE_S)
                with contextlib.suppress(RedisError):
                    await self._ensure_groups()
            except Exception:
                if not self.live:
                    return
                self.counts["errors"] += 1
                log.exception("%s failed; restarting it", loop.__name__)
                await asyncio.sleep(ERROR_PAUSE_S)

    async def _ensure_groups(self) -> None:
        for stream in self.handler.streams:
            await ensure_group(self.redis, stream, self.handler.group)

    async def _xread(self, streams: dict[str, str], count: int, block: int | None) -> list[Entry]:
        ids: dict[Any, Any] = streams
        try:
            reply = await self.redis.xreadgroup(
                self.handler.group, self.consumer, ids, count=count, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_groups()  # Redis came back without our group (or was flushed)
            return []
        return parse_read(reply)

    async def _read(self) -> None:
        """The read loop: one over all the streams on a single Redis; on a cluster one per hash
        slot the streams span (XREADGROUP names keys of one slot), each guarded on its own."""
        groups = slot_groups(self.redis, list(self.handler.streams))
        if len(groups) == 1:
            await self._read_streams(groups[0])
            return

        def loop_of(streams: list[str]) -> Loop:
            async def read_slot() -> None:
                await self._read_streams(streams)

            return read_slot

        await asyncio.gather(*(self._guarded(loop_of(g)) for g in groups))

    async def _read_streams(self, streams: list[str]) -> None:
        """Take new entries of `streams` as room frees up; in burst mode return once idle."""
        h = self.handler
        every = {s: ">" for s in streams}
        drained = False
        while self.reading:
            if self.trouble > self.reread_upto:
                await self._reread()
            room = await h.room()
            entries: list[Entry] = []
            # After a read that left the streams empty, one read over all of them (blocking)
            # serves: reading each stream in turn first costs a round trip per stream per job
            # at low rates, where start latency matters.
            if h.prioritized and not drained:
                for stream in streams:
                    if len(entries) >= room:
                        break
                    entries += await self._xread({stream: ">"}, room - len(entries), None)
            if not entries and self.burst and await self._idle():
                # Something may have been queued since the reads above: look once more.
                entries = await self._xread(every, room, None)
                if not entries:
                    return
            if not entries:
                block = BURST_BLOCK_MS if self.burst else READ_BLOCK_MS
                entries = await self._xread(every, room, block)
            drained = len(entries) < room
            rest = h.take(entries)
            for entry in rest:
                await self.submit(entry)
            if entries:
                # The work just read starts before the next read is sent (sending it is most of
                # the time from a read to the start of its work otherwise).
                await asyncio.sleep(0)

    async def _reread(self) -> None:
        """Hand our own pending entries to the workers again (those not still in hand): after
        an outage, work that failed for want of Redis is redone now."""
        upto = self.trouble
        for stream in self.handler.streams:
            start = "0"
            while True:
                page = await self._xread({stream: start}, PAGE, None)
                held = {*self.in_hand, *self.handler.holding()}
                for entry in page:
                    if (entry.stream, entry.id) in held:
                        continue
                    if not entry.fields:  # deleted from the stream meanwhile
                        await self.redis.xack(stream, self.handler.group, entry.id)
                        continue
                    self.counts["reread"] += 1
                    await self.submit(entry.reclaimed_copy())
                if len(page) < PAGE:
                    break
                start = page[-1].id
        self.reread_upto = upto

    async def _idle(self) -> bool:
        """Burst mode: nothing queued or in hand, nothing pending in the group, nothing left of
        the handler's own."""
        if self.in_hand or not self.queue.empty() or not await self.handler.idle():
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.handler.streams:
                pipe.xpending(stream, self.handler.group)
            pending = await pipe.execute()
        return all(p["pending"] == 0 for p in pending)

    async def _work(self, index: int) -> None:
        WORKER.set(index)
        h = self.handler
        while self.working:
            batch = [await self.queue.get()]
            while len(batch) < h.batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await h.handle(batch)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self.troubled(exc)
            except Exception as exc:
                self.counts["errors"] += 1
                log.exception("%s failed on %s", h.name, [e.id for e in batch])
                for entry in batch:
                    with contextlib.suppress(RedisError):
                        await self._failed(entry, exc)
            finally:
                for entry in batch:
                    self.in_hand.pop((entry.stream, entry.id), None)
                    self.queue.task_done()

    def troubled(self, exc: Exception) -> None:
        """Work failed for want of Redis: not acknowledged, it is re-read (as delivered
        before) once Redis answers again."""
        self.counts["redis_errors"] += 1
        redis_error(exc)
        self.trouble += 1
        log.warning("%s: %s", self.handler.name, exc)

    async def _failed(self, entry: Entry, exc: Exception) -> None:
        """Leave a failed entry for another try (it is reclaimed after the claim timeout),
        unless it has been delivered `max_deliveries` times: then dead-letter it."""
        if not entry.id:
            await self.handler.failed(entry, exc)
            return
        limit = self.handler.max_deliveries
        if limit is None:
            return
        if isinstance(exc, Poison):
            await self._dead_letter(entry, str(exc))
            return
        pending = await self.redis.xpending_range(
            entry.stream, self.handler.group, min=entry.id, max=entry.id, count=1
        )
        if pending and int(pending[0]["times_delivered"]) >= limit:
            await self._dead_letter(entry, f"{type(exc).__name__}: {exc}")

    async def _dead_letter(self, entry: Entry, error: str) -> None:
        h = self.handler
        fields: dict[Any, Any] = h.dead_fields(entry, error[:500])
        await self.redis.xadd(h.dead_stream(entry.stream), fields)
        try:
            await h.dead(entry, error)
        finally:
            await self.redis.xack(entry.stream, h.group, entry.id)
        self.counts["dead_lettered"] += 1
        log.error("%s: entry %s of %s dead-lettered: %s", h.name, entry.id, entry.stream, error)

    async def _reclaim(self) -> None:
        """Take over entries idle past the claim timeout (their consumer died); first
        dead-letter those delivered too often (they may be what kills consumers)."""
        h = self.handler
        interval = max(0.05, h.claim_idle_ms / 4000)
        while self.reading:
            await asyncio.sleep(interval)
            for stream in h.streams:
                if h.max_deliveries is not None:
                    await self._bury(stream, h.max_deliveries)
                start = "0-0"
                while True:
                    start, claimed, *_ = await self.redis.xautoclaim(
                        stream,
                        h.group,
                        self.consumer,
                        min_idle_time=h.claim_idle_ms,
                        start_id=start,
                        count=PAGE,
                    )
                    for entry_id, fields in claimed:
                        if fields:
                            self.counts["reclaimed"] += 1
                            await self.submit(Entry(stream, entry_id, fields, reclaimed=True))
                    if start == "0-0":
                        break

    async def _bury(self, stream: str, limit: int) -> None:
        h = self.handler
        idle = await self.redis.xpending_range(
            stream, h.group, min="-", max="+", count=PAGE, idle=h.claim_idle_ms
        )
        for p in idle:
            if int(p["times_delivered"]) < limit:
                continue
            entry_id = str(p["message_id"])
            found = await self.redis.xrange(stream, entry_id, entry_id)
            fields = cast(dict[str, str], found[0][1] if found else {})
            times = int(p["times_delivered"])
            await self._dead_letter(
                Entry(stream, entry_id, fields), f"delivered {times} times, never settled"
            )

    async def _renew(self) -> None:
        """Keep the claims of entries in hand fresh (XCLAIM to ourselves resets their idle
        time), so that no other consumer takes them over while they are worked on."""
        h = self.handler
        interval = max(0.02, h.claim_idle_ms / 3000)
        while self.live:
            await asyncio.sleep(interval)
            by_stream: dict[str, list[str | bytes | int | memoryview[int]]] = {}
            for stream, entry_id in [*self.in_hand, *h.holding()]:
                by_stream.setdefault(stream, []).append(entry_id)
            for stream, ids in by_stream.items():
                await self.redis.xclaim(stream, h.group, self.consumer, 0, ids, justid=True)

    async def _trim(self) -> None:
        while self.live:
            await asyncio.sleep(TRIM_EVERY_S)
            for stream in self.handler.streams:
                self.counts["trimmed"] += await trim_acknowledged(
                    self.redis, stream, self.handler.group
                )
