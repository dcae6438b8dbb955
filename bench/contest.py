"""`python -m bench.contest`: one contest worker process of figure 8 (see bench/contest_figure.py).

Many asyncio tasks, each in a loop: create a ride directly (`Orders.enqueue(..., direct=True)`),
dispatch it at once with `Dispatcher.handle`, and play the driver and the rider at random:
accept and drive it to the end (or cancel it), reject it, let the offer lapse, answer late or
with a wrong token, and cancel rides left searching. Every `offer_create` call is one reservation
attempt, counted by its reply; the counts go to the Redis hash `bench:contest` twice a second
(a worker killed -9 loses at most the last half second of them). Settings come from the
`RIDEFLOW_*` environment, as for any RideFlow process. SIGTERM ends the loops and flushes counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import uvloop
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.dispatch.offers import Reservation
from rideflow.dispatch.service import Outcome
from rideflow.errors import RideflowError
from rideflow.redis.connections import create_redis
from rideflow.redis.scripts import Arg, Lua, Scripts
from rideflow.services import build_services

COUNTS_KEY = "bench:contest"
CITY = "blr"
FLUSH_S = 0.5
ONCE_SHARE = 0.85  # the rest is left searching (the dispatchers retry it) when nobody is free
ERROR_PAUSE_S = 0.2

log = logging.getLogger("bench.contest")
COUNTED = {
    Reservation.OFFERED: "offered",
    Reservation.NOT_SEARCHING: "not_searching",
    Reservation.NONE: "none",
    Reservation.LATE: "late",
}


class CountingLua(Lua):
    """`offer_create`, counting every call (one reservation attempt) by its reply."""

    __slots__ = ("counts",)

    def __init__(self, inner: Lua, counts: Counter[str]) -> None:
        super().__init__(inner.redis, inner.source)
        self.counts = counts

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg] = ()) -> Any:
        reply = await super().__call__(keys, args)
        self.counts["attempts"] += 1
        self.counts[COUNTED[Reservation(reply[0])]] += 1
        return reply


class Player:
    """The tasks of one worker process and what they share."""

    def __init__(self, settings: Settings, seed: int) -> None:
        self.settings = settings
        self.redis: Redis = create_redis(settings, "contest")
        self.counts: Counter[str] = Counter()
        scripts = _with_counting(Scripts.register(self.redis), self.counts)
        svc = build_services(settings, self.redis, scripts=scripts)
        self.orders, self.offers, self.dispatcher = svc.orders, svc.offers, svc.dispatcher
        self.window_s = settings.ride_offer_window_s
        self.seed = seed
        self.stop = asyncio.Event()

    async def run(self, tasks: int) -> None:
        """Play until stopped, then flush the counts one last time."""
        flusher = asyncio.create_task(self._flush_forever())
        players = [
            asyncio.create_task(self._play(random.Random(self.seed * 1000 + i)))
            for i in range(tasks)
        ]
        await self.stop.wait()
        await asyncio.gather(*players, return_exceptions=True)
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await self._flush()
        await self.redis.aclose()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self._flush()

    async def _flush(self) -> None:
        if not self.counts:
            return
        taken = dict(self.counts)
        self.counts.clear()
        async with self.redis.pipeline(transaction=True) as pipe:
            for name, n in taken.items():
                pipe.hincrby(COUNTS_KEY, name, n)
            await pipe.execute()

    async def _play(self, rng: random.Random) -> None:
        while not self.stop.is_set():
            try:
                await self._one_ride(rng)
            except RideflowError:
                self.counts["refused"] += 1  # another player moved the ride on: part of the game
            except Exception:
                self.counts["errors"] += 1
                log.exception("a ride failed")
                await asyncio.sleep(ERROR_PAUSE_S)

    async def _one_ride(self, rng: random.Random) -> None:
        lat = 12.9716 + rng.uniform(-0.002, 0.002)
        lng = 77.5946 + rng.uniform(-0.002, 0.002)
        fields: dict[str, str | int | float] = {
            "customer": f"rider-{rng.randrange(1_000_000)}",
            "pickup": f"{lat:.6f},{lng:.6f}",
            "dropoff": f"{lat + 0.02:.6f},{lng + 0.01:.6f}",
            "strategy": "nearest",
        }
        _, ride_id = await self.orders.enqueue(CITY, "ride", fields, direct=True)
        self.counts["rides"] += 1
        once = rng.random() < ONCE_SHARE
        before = self.counts["attempts"]
        outcome = await self.dispatcher.handle(CITY, ride_id, once=once)
        if self.counts["attempts"] == before:
            self.counts["rides_without_attempt"] += 1  # nobody free when it searched
        if outcome.offer is None:
            if outcome.status == "SEARCHING":  # left to the dispatchers' retries for a while
                await asyncio.sleep(rng.uniform(0.05, 0.4))
                await self._cancel(ride_id)
            return
        await self._answer(rng, ride_id, outcome)

    async def _answer(self, rng: random.Random, ride_id: str, outcome: Outcome) -> None:
        assert outcome.offer is not None and outcome.driver is not None
        offer, driver = outcome.offer, outcome.driver.driver_id
        roll = rng.random()
        if roll < 0.40:
            await self._accept(rng, ride_id, offer.offer_id, driver, offer.token)
        elif roll < 0.62:
            await self.offers.answer(offer.offer_id, "reject", driver, offer.token)
            self.counts["rejects_sent"] += 1
            await asyncio.sleep(rng.uniform(0.0, 0.3))  # it is offered to the next driver...
            await self._cancel(ride_id)  # ...while the rider gives up
        elif roll < 0.82:
            self.counts["ignored"] += 1  # it lapses, and is offered again, until cancelled
            await asyncio.sleep(rng.uniform(0.6, 1.4) * self.window_s)
            await self._cancel(ride_id)
        elif roll < 0.92:
            # Answer around the deadline: races the sweeper letting it lapse.
            await asyncio.sleep(self.window_s + rng.uniform(-0.05, 0.05))
            self.counts["late_answers"] += 1
            try:
                await self._accept(rng, ride_id, offer.offer_id, driver, offer.token)
            except RideflowError:
                await self._cancel(ride_id)
        else:
            # A stale token and a stranger are refused; then the driver accepts.
            for who, token in ((driver, offer.token - 1), (f"{driver}-x", offer.token)):
                with contextlib.suppress(RideflowError):
                    await self.offers.answer(offer.offer_id, "accept", who, token)
                    self.counts["fence_breaches"] += 1  # must never happen
            await self._accept(rng, ride_id, offer.offer_id, driver, offer.token)

    async def _accept(
        self, rng: random.Random, ride_id: str, offer_id: str, driver: str, token: int
    ) -> None:
        await self.offers.answer(offer_id, "accept", driver, token)
        self.counts["accepted"] += 1
        if rng.random() < 0.15:
            await self._cancel(ride_id)
            return
        for step in ("arriving", "picked-up", "complete"):
            await self.orders.step(ride_id, "ride", step, driver)
        self.counts["completed"] += 1

    async def _cancel(self, ride_id: str) -> None:
        try:
            await self.orders.step(ride_id, "ride", "cancel")
            self.counts["cancelled"] += 1
        except RideflowError:
            self.counts["cancel_refused"] += 1  # it ended meanwhile (no driver found, say)


def _with_counting(scripts: Scripts, counts: Counter[str]) -> Scripts:
    from dataclasses import replace

    return replace(scripts, offer_create=CountingLua(scripts.offer_create, counts))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=40, help="concurrent players")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Play until SIGTERM or SIGINT."""
    args = parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr)

    async def run() -> None:
        player = Player(settings, args.seed)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, player.stop.set)
        await player.run(args.tasks)

    uvloop.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
