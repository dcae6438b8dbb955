"""Replaying the city event stream: who holds what, and every breach of one driver - one order.

A driver holds an order from its OFFERED event until an event of that order with status SEARCHING
naming that driver (the offer was rejected or lapsed), CANCELLED, COMPLETED or DELIVERED. A
violation is an OFFERED event naming a driver who still holds an order, or an order that still
has a driver; an inconsistency is any other event that disagrees with who holds what.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import cast

from redis.asyncio import Redis

from bench.harness import CITY
from rideflow.redis import keys

READ_COUNT = 20_000
FINAL = ("CANCELLED", "COMPLETED", "DELIVERED", "NO_DRIVER_FOUND")
TAKEN = ("ACCEPTED", "DRIVER_ARRIVING", "PICKED_UP")


def freed_by(event: dict[str, str]) -> str:
    """How a SEARCHING event naming a driver came about: 'rejected' or 'lapsed' (from its
    `outcome`, REJECTED or EXPIRED, or from its reason where it has none); '' for a SEARCHING
    event that frees nobody."""
    if not event.get("driver"):
        return ""
    outcome = event.get("outcome")
    if outcome:
        return "lapsed" if outcome == "EXPIRED" else "rejected"
    return "lapsed" if "lapsed" in event.get("reason", "") else "rejected"


@dataclass(slots=True)
class Verifier:
    """Replays the city event stream: who holds what, and every breach of one driver - one
    order."""

    redis: Redis
    last_id: str = "0-0"
    read: int = 0
    driver_order: dict[str, str] = field(default_factory=dict)
    order_driver: dict[str, str] = field(default_factory=dict)
    taken_at: dict[str, int] = field(default_factory=dict)  # accepted-ish orders -> last event us
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    inconsistencies: list[str] = field(default_factory=list)
    gap: str = ""

    async def read_some(self, block_ms: int | None = 200) -> int:
        """Read and check the next batch (waiting up to `block_ms` for one, or not at all when
        None); returns how many entries it held."""
        stream = keys.city_events(CITY)
        reply = await self.redis.xread({stream: self.last_id}, count=READ_COUNT, block=block_ms)
        n = 0
        for _stream, entries in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply):
            for entry_id, event in entries:
                self.check(entry_id, event)
                n += 1
            if entries:
                self.last_id = entries[-1][0]
        self.read += n
        return n

    def check(self, entry_id: str, e: dict[str, str]) -> None:
        """Apply one event to the holder maps; record any breach."""
        order, status, driver = e.get("order", ""), e.get("status", ""), e.get("driver", "")
        self.statuses[status] += 1
        holder = self.order_driver.get(order)
        if status == "OFFERED":
            if driver in self.driver_order:
                self.violations.append(
                    f"{entry_id}: {order} offered to {driver}, who holds "
                    f"{self.driver_order[driver]}"
                )
            if holder is not None:
                self.violations.append(f"{entry_id}: {order} offered to {driver}; {holder} has it")
            self.driver_order[driver] = order
            self.order_driver[order] = driver
        elif status in TAKEN:
            if holder != driver:
                self.inconsistencies.append(f"{entry_id}: {order} {status} by {driver}, {holder}")
            self.taken_at[order] = int(e["at"])
        elif status == "SEARCHING":
            if driver:
                self.reasons[freed_by(e)] += 1
                if holder != driver:
                    self.inconsistencies.append(f"{entry_id}: {order} freed {driver}, {holder}")
                self._release(order)
            elif holder is not None:
                self.inconsistencies.append(f"{entry_id}: {order} SEARCHING held by {holder}")
        elif status in FINAL:
            if holder is not None and driver != holder:
                self.inconsistencies.append(f"{entry_id}: {order} {status} {driver}, {holder}")
            if holder is None and driver:
                self.inconsistencies.append(f"{entry_id}: {order} {status} by unheld {driver}")
            self._release(order)

    def _release(self, order: str) -> None:
        driver = self.order_driver.pop(order, None)
        if driver is not None and self.driver_order.get(driver) == order:
            del self.driver_order[driver]
        self.taken_at.pop(order, None)

    async def check_gap(self) -> bool:
        """True, with `gap` set, when entries were trimmed before this verifier read them."""
        added, length = await stream_counts(self.redis)
        if added - self.read > length and not self.gap:
            self.gap = (
                f"{added - self.read - length} entries trimmed unread (added {added:,}, read"
                f" {self.read:,}, length {length:,}, last read {self.last_id})"
            )
        return bool(self.gap)

    async def drain(self) -> None:
        """Read to the end of the stream."""
        while await self.read_some(block_ms=None) > 0:
            pass


async def last_event_id(redis: Redis) -> str:
    """The id of the newest entry of the city event stream ('0-0' when empty)."""
    newest = await redis.xrevrange(keys.city_events(CITY), count=1)
    return str(newest[0][0]) if newest else "0-0"


async def stream_counts(redis: Redis) -> tuple[int, int]:
    """(entries ever added, length) of the city event stream; (0, 0) before its first entry."""
    stream = keys.city_events(CITY)
    if not await redis.exists(stream):
        return 0, 0
    info = await redis.xinfo_stream(stream)
    return int(info["entries-added"]), int(info["length"])


async def replay(redis: Redis, after: str) -> Verifier:
    """Every event after id `after` replayed (orders created before it are unknown to it)."""
    verifier = Verifier(redis, last_id=after)
    await verifier.drain()
    return verifier


def verdict_text(verifier: Verifier) -> str:
    """Violations and inconsistencies in a few words."""
    text = f"{len(verifier.violations)} double offers"
    if verifier.violations:
        text += f" (e.g. {verifier.violations[0]})"
    if verifier.inconsistencies:
        text += f", {len(verifier.inconsistencies)} inconsistent events"
        text += f" (e.g. {verifier.inconsistencies[0]})"
    return text
