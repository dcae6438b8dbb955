"""The hub: one per API process. It reads every city's event stream once (`XREAD`, no group,
one task) and the cities' tracking channels over one Pub/Sub connection, and routes what it reads
to this process's sockets by driver, by order and by city. It also pings every socket and sends
admins their cities' driver counts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from rideflow.auth.principal import Role
from rideflow.config import Settings
from rideflow.dispatch.offers import Offers
from rideflow.drivers.store import Drivers
from rideflow.errors import NotFound, RideflowError, Unprocessable
from rideflow.orders.pins import TripPins
from rideflow.realtime.protocol import (
    Close,
    encode,
    event_data,
    id_key,
    parse_fix,
)
from rideflow.realtime.session import Session, ping
from rideflow.realtime.snapshot import OpenOrders, driver_snapshot
from rideflow.redis import keys
from rideflow.redis.connections import disconnect, initialized, open_redis, slot_groups

log = logging.getLogger("rideflow.realtime")
BLOCK_MS = 1_000
READ_COUNT = 1_000
RETRY_S = 0.5
MAX_SUBSCRIPTIONS = 100
"""Orders (or cities) one socket may follow at once."""
WITHDRAWN = frozenset({"SEARCHING"})
ENTRY_ID = r"^\d{1,20}-\d{1,20}$"

Unreachable = Callable[[str], Awaitable[None]]


class Hub:
    """Routes events and positions to this process's sockets."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        offers: Offers,
        drivers: Drivers,
        unreachable: Unreachable,
        pins: TripPins,
    ) -> None:
        self.settings, self.redis, self.offers, self.drivers = settings, redis, offers, drivers
        self.unreachable, self.pins = unreachable, pins
        self.cities = [c.code for c in settings.cities]
        self.sessions: set[Session] = set()
        self.by_driver: dict[str, set[Session]] = defaultdict(set)
        self.by_order: dict[str, set[Session]] = defaultdict(set)
        self.by_city: dict[str, set[Session]] = defaultdict(set)
        self.snapshots: dict[str, set[Session]] = defaultdict(set)
        self.open_orders = OpenOrders()
        """Admin sockets that asked for the city's driver snapshot (the dashboard's map)."""
        self.reader: Redis | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.listening = False
        self.stopping = False
        self.marking: set[asyncio.Task[None]] = set()
        # Routing a read never queues more to one socket than half its queue holds, so only a
        # client that does not keep up overflows.
        self.page = max(1, min(READ_COUNT, settings.ws_send_queue // 2))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # Blocking reads and the subscription hold their connections: a client of their own.
        self.reader = await open_redis(self.settings, "api-hub", socket_timeout=BLOCK_MS / 1000 + 5)
        self.tasks = [
            asyncio.create_task(self._heartbeats(), name="hub-heartbeats"),
            asyncio.create_task(self._counts(), name="hub-counts"),
            asyncio.create_task(self._snapshots(), name="hub-snapshots"),
        ]

    async def wake(self) -> None:
        """Start reading the event streams and the tracking channels when the first socket
        arrives, and return once the streams' ends are known (so a subscription made after
        this misses nothing). An API process that no socket ever reached reads nothing: each
        ride request it accepts would otherwise come back to it through its own read."""
        if self.stopping:
            return
        if not self.listening:
            self.listening = True
            self.tasks += [
                asyncio.create_task(self._read_events(), name="hub-events"),
                asyncio.create_task(self._read_positions(), name="hub-positions"),
            ]
        await self.ready.wait()

    async def stop(self) -> None:
        for session in list(self.sessions):
            session.end(Close.GOING_AWAY, "the server is shutting down; reconnect")
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        if self.reader is not None:
            # A read cancelled inside redis-py's own timeout can come back as a connection
            # error instead of the cancellation; with the connections gone it ends at once.
            await disconnect(self.reader)
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.reader is not None:
            await self.reader.aclose()

    # -- membership ------------------------------------------------------------------------

    def add(self, session: Session) -> None:
        self.sessions.add(session)
        if session.role is Role.DRIVER:
            self.by_driver[session.subject].add(session)

    def revoked(self, subject: str) -> None:
        """The account's access tokens were revoked: close its sockets (4401)."""
        for session in [s for s in self.sessions if s.subject == subject]:
            session.end(Close.UNAUTHORIZED, "the access token was revoked; log in again")

    def remove(self, session: Session) -> None:
        self.sessions.discard(session)
        _discard(self.by_driver, session.subject, session)
        for order_id in [*session.orders, *session.replaying]:
            _discard(self.by_order, order_id, session)
        for city in session.cities:
            _discard(self.by_city, city, session)
            _discard(self.snapshots, city, session)

    def city_of_order(self, order_id: str) -> str:
        city = order_id.partition("-")[0]
        if city not in self.cities or not order_id.partition("-")[2]:
            raise NotFound(f"no order with id {order_id!r}")
        return city

    async def subscribe(self, session: Session, order_id: str, after: str | None) -> int:
        """Follow an order: replay its events after `after` from its own stream, then live
        ones, with no gap and no duplicate. A customer may follow only their own orders (any
        other is not found); returns how many events were replayed."""
        city = self.city_of_order(order_id)
        if after is not None and not _is_entry_id(after):
            raise Unprocessable(
                "`after` must be an event id such as 1700000000000-0", field="after"
            )
        customer = await self.redis.hget(keys.order(city, order_id), "customer")
        if customer is None or (session.role is not Role.ADMIN and customer != session.subject):
            raise NotFound(f"no order with id {order_id!r}")
        if order_id not in session.orders and len(session.orders) >= MAX_SUBSCRIPTIONS:
            raise Unprocessable(
                f"a socket follows at most {MAX_SUBSCRIPTIONS} orders", field="order_id"
            )
        # Registered before the read: whatever the stream holds after the read reaches this
        # socket live, and the events in both are told apart by id.
        session.replaying[order_id] = []
        self.by_order[order_id].add(session)
        last = id_key(after) if after else session.orders.get(order_id)
        replayed = 0
        try:
            # In pages of half the send queue, each written out before the next is read: a
            # long history never overflows the queue of a client that reads.
            page, start = self.page, f"({after}" if after else "-"
            while True:
                entries = cast(
                    list[tuple[str, dict[str, str]]],
                    await self.redis.xrange(
                        keys.order_events(city, order_id), min=start, count=page
                    ),
                )
                for entry_id, fields in entries:
                    key = id_key(entry_id)
                    if last is not None and key <= last:
                        continue
                    last = key
                    replayed += 1
                    data = event_data(city, {**fields, "order": order_id})
                    session.send(encode("event", entry_id, data))
                if len(entries) < page or session.ending is not None:
                    break
                start = f"({entries[-1][0]}"
                await session.drained()
        except BaseException:
            session.replaying.pop(order_id, None)
            if order_id not in session.orders:
                _discard(self.by_order, order_id, session)
            raise
        buffered = session.replaying.pop(order_id, [])
        session.orders[order_id] = last
        for key, text in buffered:
            session.send_event(order_id, key, text)
        if session.role is Role.CUSTOMER:  # assigned before they followed: the code now
            pin = await self.pins.current(city, order_id)
            if pin is not None:
                session.send(encode("pin", None, {"order_id": order_id, "pin": pin}))
        return replayed

    def unsubscribe(self, session: Session, order_id: str) -> bool:
        session.fix_sent.pop(order_id, None)
        found = session.orders.pop(order_id, 0) != 0
        _discard(self.by_order, order_id, session)
        return found

    def follow_city(self, session: Session, city: str, snapshot: bool = False) -> None:
        if city not in self.cities:
            raise NotFound(f"no city {city!r}; known: {self.cities}")
        session.cities.add(city)
        self.by_city[city].add(session)
        if snapshot:
            self.snapshots[city].add(session)
        else:
            _discard(self.snapshots, city, session)

    def unfollow_city(self, session: Session, city: str) -> bool:
        found = city in session.cities
        session.cities.discard(city)
        _discard(self.by_city, city, session)
        _discard(self.snapshots, city, session)
        return found

    # -- events ----------------------------------------------------------------------------

    async def _read_events(self) -> None:
        """Follow the cities' event streams: one read over all of them on a single Redis; on a
        cluster one per hash slot they span (XREAD names keys of one slot)."""
        assert self.reader is not None
        groups = slot_groups(self.reader, [keys.city_events(c) for c in self.cities])
        starts: dict[str, str] = {}
        while True:
            try:
                # The streams' current ends, read once: from there on, nothing is missed
                # between two reads (a `$` on every call would skip what came meanwhile).
                for group in groups:
                    for stream in group:
                        last = await self.reader.xrevrange(stream, count=1)
                        starts[stream] = str(last[0][0]) if last else "0-0"
                break
            except RedisError as exc:
                if self.stopping:
                    return
                log.warning("event stream read failed (%s); retrying", exc)
                await asyncio.sleep(RETRY_S)
        self.ready.set()
        await asyncio.gather(*(self._follow({s: starts[s] for s in group}) for group in groups))

    async def _follow(self, streams: dict[str, str]) -> None:
        """Read `streams` (keys of one slot) from the ids given, routing every entry."""
        assert self.reader is not None
        while True:
            try:
                reply = cast(
                    list[tuple[str, list[tuple[str, dict[str, str]]]]],
                    await self.reader.xread(cast(Any, streams), count=self.page, block=BLOCK_MS),
                )
            except RedisError as exc:
                if self.stopping:
                    return
                log.warning("event stream read failed (%s); retrying", exc)
                await asyncio.sleep(RETRY_S)
                continue
            for stream, entries in reply or []:
                city = _city_of_stream(stream)
                for entry_id, fields in entries:
                    streams[stream] = entry_id
                    try:
                        await self.route(city, entry_id, fields)
                    except Exception:
                        log.exception("routing event %s of %s failed", entry_id, city)

    async def route(self, city: str, entry_id: str, fields: dict[str, str]) -> None:
        """One transition to the sockets that follow its order, its driver or its city."""
        order_id = fields.get("order", "")
        followers = self.by_order.get(order_id)
        watchers = self.by_city.get(city)
        if city in self.snapshots:
            self.open_orders.saw(city, fields)
        driver = fields.get("driver") or ""
        drivers = self.by_driver.get(driver) if driver else None
        if not (followers or watchers or drivers):
            return
        data = event_data(city, fields)
        text = encode("event", entry_id, data)
        key = id_key(entry_id)
        for session in list(followers or ()):
            session.send_event(order_id, key, text)
        if followers and fields.get("status") == "ACCEPTED" and fields.get("offer"):
            # The trip PIN to the customer's own sockets, never a driver's or ADMIN's.
            pin = {"order_id": order_id, "pin": self.pins.pin(order_id, fields["offer"])}
            for session in list(followers):
                if session.role is Role.CUSTOMER:
                    session.send(encode("pin", entry_id, pin))
        for session in list(watchers or ()):
            session.send(text)
        if drivers:
            await self._to_driver(drivers, fields, entry_id, data, text)

    async def _to_driver(
        self,
        sessions: set[Session],
        fields: dict[str, str],
        entry_id: str,
        data: dict[str, Any],
        text: str,
    ) -> None:
        status, offer_id = fields.get("status", ""), fields.get("offer") or ""
        if status == "OFFERED" and offer_id:
            try:
                view = await self.offers.get(offer_id)
            except RideflowError:
                return  # gone already (retention), nothing to offer
            if view.status != "PENDING":
                return  # answered before it could be pushed (over REST, say)
            offer = encode("offer", entry_id, view.model_dump(mode="json"))
            for session in list(sessions):
                session.send_offer(offer_id, offer)
            return
        if offer_id and (status in WITHDRAWN or data.get("outcome") or status == "CANCELLED"):
            withdrawn = {
                "offer_id": offer_id,
                "order_id": data["order_id"],
                "outcome": data.get("outcome") or "WITHDRAWN",
                "reason": data.get("reason") or f"the order was {status.lower()}",
            }
            for session in list(sessions):
                session.send(encode("offer.withdrawn", entry_id, withdrawn))
            return
        if status in WITHDRAWN:
            return
        for session in list(sessions):
            session.send(text)

    # -- positions -------------------------------------------------------------------------

    async def _read_positions(self) -> None:
        assert self.reader is not None
        channels = [keys.tracking(city) for city in self.cities]
        every = self.settings.ws_position_every_s
        while True:
            pubsub = self.reader.pubsub(ignore_subscribe_messages=True)
            try:
                await initialized(self.reader)  # a cluster's pubsub needs its slot map first
                await pubsub.subscribe(*channels)
                while True:
                    message = await pubsub.get_message(timeout=BLOCK_MS / 1000)
                    if message is None or message.get("type") != "message":
                        continue
                    fix = parse_fix(str(message["data"]))
                    followers = self.by_order.get(fix.order_id) if fix else None
                    if fix is None or not followers:
                        continue
                    text = encode("position", None, fix.data())
                    for session in list(followers):
                        session.send_fix(fix.order_id, text, every)
            except Exception as exc:  # a cluster whose slot map is being rebuilt: KeyError
                if self.stopping:
                    return
                log.warning("tracking subscription failed (%r); resubscribing", exc)
                await asyncio.sleep(RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    # -- heartbeats and counts -------------------------------------------------------------

    async def _heartbeats(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.settings.ws_heartbeat_s)
            n += 1
            for session in list(self.sessions):
                if session.ending is not None:
                    continue
                if session.missed >= 2:
                    session.end(Close.HEARTBEAT, "two pings went unanswered")
                    if session.role is Role.DRIVER:
                        task = asyncio.create_task(self._mark_unreachable(session.subject))
                        self.marking.add(task)
                        task.add_done_callback(self.marking.discard)
                    continue
                session.missed += 1
                session.send(ping(n))

    async def _mark_unreachable(self, driver_id: str) -> None:
        try:
            await self.unreachable(driver_id)
        except Exception:
            log.exception("could not take unreachable driver %s offline", driver_id)

    async def _counts(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ws_counts_every_s)
            for city, watchers in list(self.by_city.items()):
                if not watchers:
                    continue
                try:
                    data = await self.counts(city)
                except RedisError as exc:
                    log.warning("driver counts of %s failed: %s", city, exc)
                    continue
                text = encode("drivers.count", None, data)
                for session in list(watchers):
                    session.send(text)

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ws_snapshot_every_s)
            for city, watchers in list(self.snapshots.items()):
                if watchers:
                    await self.send_snapshot(city, watchers)

    async def send_snapshot(self, city: str, sessions: set[Session]) -> None:
        """The city's driver snapshot to `sessions` (one read, however many sockets)."""
        try:
            data = await driver_snapshot(self.redis, city, self.settings.stale_ms)
            area = next(c for c in self.settings.cities if c.code == city)
            data["orders"] = self.open_orders.of(city)
            data["area"] = {"lat": area.lat, "lng": area.lng, "radius_km": area.radius_km}
        except RedisError as exc:
            log.warning("driver snapshot of %s failed: %s", city, exc)
            return
        text = encode("drivers.snapshot", None, data)
        for session in list(sessions):
            session.send(text)

    async def counts(self, city: str) -> dict[str, Any]:
        """Drivers available (in the pool) and active (a position within the stale window)."""
        fresh_after = int(time.time() * 1000) - self.settings.stale_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.pool(city))
            pipe.zcount(keys.seen(city), fresh_after, "+inf")
            available, active = await pipe.execute()
        return {"city": city, "available": int(available), "active": int(active)}


def _discard(index: dict[str, set[Session]], key: str, session: Session) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(session)
        if not members:
            del index[key]


def _city_of_stream(stream: str) -> str:
    return stream[stream.index("{") + 1 : stream.index("}")]


def _is_entry_id(value: str) -> bool:
    return re.fullmatch(ENTRY_ID, value) is not None
