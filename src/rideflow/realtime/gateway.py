"""The gateway: one authenticated socket served from its first message to its last. It reads the
client's messages and answers each through the same service calls as the REST routes; the
hub routes events and positions to it; its session's sender writes them out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from rideflow.auth.principal import Principal, Role
from rideflow.config import Settings
from rideflow.dispatch.offers import Offers
from rideflow.drivers.schemas import DriverLocation, DriverStatusUpdate, DriverView, Location
from rideflow.drivers.store import Drivers
from rideflow.errors import Forbidden, NotFound, RideflowError, Unprocessable
from rideflow.metrics import families as metrics
from rideflow.realtime.hub import Hub
from rideflow.realtime.positions import Positions
from rideflow.realtime.protocol import Inbound, ack, encode, error, parse
from rideflow.realtime.session import Session
from rideflow.schemas import ID_PATTERN, Body

log = logging.getLogger("rideflow.realtime")


class OfferReply(Body):
    offer_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    token: int = Field(ge=1, description="The offer's fencing token")


class Subscribe(Body):
    order_id: str = Field(min_length=1, max_length=96, pattern=ID_PATTERN)
    after: str | None = Field(default=None, max_length=42, description="The last event id seen")


class Unsubscribe(Body):
    order_id: str = Field(min_length=1, max_length=96, pattern=ID_PATTERN)


class CityFeed(Body):
    city: str = Field(min_length=1, max_length=16)
    snapshot: bool = Field(
        default=False,
        description="Also send `drivers.snapshot` (every fresh driver's position and state) "
        "now and every RIDEFLOW_WS_SNAPSHOT_EVERY_S: the dashboard's map",
    )


class Pong(BaseModel):
    model_config = ConfigDict(extra="allow")


MessageId = str | int | None
Handler = Callable[[Session, dict[str, Any], MessageId], Awaitable[Any]]
NO_REPLY = object()
"""A handler's result when the reply, if any, comes later (a position in a batch)."""


async def set_driver_status(
    drivers: Drivers, offers: Offers, driver_id: str, status: str, reason: str
) -> DriverView:
    """Online or offline as `PUT /v1/drivers/{id}/status` does it: offline first (no new offer
    can be made), then a pending offer is declined so the order moves on at once."""
    view = await drivers.set_status(driver_id, status)
    if status == "offline" and view.offer_id:
        await offers.decline(view.city, driver_id, view.offer_id, reason)
        view = await drivers.get(driver_id)
    return view


class Gateway:
    """Serves sockets; one per API process, sharing its hub."""

    def __init__(self, settings: Settings, hub: Hub, offers: Offers, drivers: Drivers) -> None:
        self.settings, self.hub, self.offers, self.drivers = settings, hub, offers, drivers
        self.positions = Positions(drivers)
        self.handlers: dict[str, tuple[frozenset[Role], Handler]] = {
            "pong": (frozenset(Role), self._pong),
            "offer.accept": (frozenset({Role.DRIVER}), self._accept),
            "offer.reject": (frozenset({Role.DRIVER}), self._reject),
            "position": (frozenset({Role.DRIVER}), self._position),
            "status": (frozenset({Role.DRIVER}), self._status),
            "subscribe": (frozenset({Role.CUSTOMER, Role.ADMIN}), self._subscribe),
            "unsubscribe": (frozenset({Role.CUSTOMER, Role.ADMIN}), self._unsubscribe),
            "subscribe.city": (frozenset({Role.ADMIN}), self._follow_city),
            "unsubscribe.city": (frozenset({Role.ADMIN}), self._unfollow_city),
        }

    async def serve(self, ws: WebSocket, principal: Principal) -> None:
        """Serve an accepted socket until the client leaves or it is closed."""
        session = Session(ws, principal, self.settings.ws_send_queue)
        self.hub.add(session)
        connected = metrics.WS_CONNECTIONS.labels(principal.role.value)
        connected.inc()
        try:
            await self.hub.wake()
            session.send(
                encode(
                    "hello",
                    None,
                    {
                        "subject": principal.subject,
                        "role": principal.role.value,
                        "heartbeat_s": self.settings.ws_heartbeat_s,
                        "send_queue": self.settings.ws_send_queue,
                    },
                )
            )
            if principal.role is Role.DRIVER:
                await self._pending_offer(session)
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    text = message.get("bytes")
                if text is not None:
                    await self.handle(session, text)
        finally:
            connected.dec()
            self.hub.remove(session)
            await session.stop()

    async def _pending_offer(self, session: Session) -> None:
        """A driver who connects with an offer pending gets it at once (once, even when the
        offer is made just then and its live event comes too)."""
        try:
            city = await self.drivers.city_of(session.subject)
            pending = await self.offers.pending_for(city, session.subject)
        except (NotFound, RedisError):
            return
        for view in pending:
            session.send_offer(view.offer_id, encode("offer", None, view.model_dump(mode="json")))

    async def handle(self, session: Session, text: str | bytes) -> None:
        """One client message: a reply when it has an id, an error reply whenever it fails."""
        try:
            message = parse(text)
        except RideflowError as exc:
            session.send(error(None, exc))
            return
        try:
            result = await self._dispatch(session, message)
        except (RideflowError, ValidationError) as exc:
            session.send(error(message.id, exc))
            return
        except RedisError as exc:
            metrics.redis_error(exc)
            log.exception("a %s message failed on Redis", message.type)
            session.send(error(message.id, _Unavailable("Redis is unavailable; retry shortly")))
            return
        except Exception:
            log.exception("a %s message failed", message.type)
            session.send(error(message.id, RuntimeError()))
            return
        if message.id is not None and result is not NO_REPLY:
            session.send(ack(message.id, result))

    async def _dispatch(self, session: Session, message: Inbound) -> Any:
        found = self.handlers.get(message.type)
        if found is None:
            raise Unprocessable(
                f"unknown message type {message.type!r}; this socket takes "
                f"{sorted(t for t, (r, _) in self.handlers.items() if session.role in r)}",
                field="type",
            )
        roles, handler = found
        if session.role not in roles:
            names = " or ".join(sorted(r.value for r in roles))
            raise Forbidden(
                f"`{message.type}` is for {names} sockets; this one is {session.role.value}"
            )
        return await handler(session, message.data, message.id)

    async def _pong(self, session: Session, data: dict[str, Any], mid: MessageId) -> None:
        session.missed = 0

    async def _accept(self, session: Session, data: dict[str, Any], mid: MessageId) -> Any:
        body = OfferReply.model_validate(data)
        answered = await self.offers.answer(body.offer_id, "accept", session.subject, body.token)
        return answered.model_dump(mode="json")

    async def _reject(self, session: Session, data: dict[str, Any], mid: MessageId) -> Any:
        body = OfferReply.model_validate(data)
        answered = await self.offers.answer(body.offer_id, "reject", session.subject, body.token)
        return answered.model_dump(mode="json")

    async def _position(self, session: Session, data: dict[str, Any], mid: MessageId) -> Any:
        # Validated as the REST route's body (`Location`: the same fields, bounds and errors),
        # in one pass with the driver the token names.
        if "driver_id" in data:
            Location.model_validate(data)  # refuses the field as the REST body does
        location = DriverLocation.model_validate({**data, "driver_id": session.subject})
        future = self.positions.submit(location)
        if mid is None and not self.positions.crowded:
            # Nothing to acknowledge: the socket reads on while the batch is in Redis, and a
            # refusal is reported when it comes.
            future.add_done_callback(lambda f: _report(session, f))
            return NO_REPLY
        await future
        return {}

    async def _status(self, session: Session, data: dict[str, Any], mid: MessageId) -> Any:
        body = DriverStatusUpdate.model_validate(data)
        view = await set_driver_status(
            self.drivers,
            self.offers,
            session.subject,
            body.status,
            f"driver {session.subject} went offline",
        )
        return view.model_dump(mode="json")

    async def _subscribe(self, session: Session, data: dict[str, Any], mid: MessageId) -> Any:
        body = Subscribe.model_validate(data)
        replayed = await self.hub.subscribe(session, body.order_id, body.after)
        return {"order_id": body.order_id, "replayed": replayed}

    async def _unsubscribe(self, session: Session, data: dict[str, Any], mid: MessageId) -> Any:
        body = Unsubscribe.model_validate(data)
        if not self.hub.unsubscribe(session, body.order_id):
            raise NotFound(f"this socket does not follow order {body.order_id!r}")
        return {"order_id": body.order_id}

    async def _follow_city(self, session: Session, data: dict[str, Any], mid: MessageId) -> Any:
        body = CityFeed.model_validate(data)
        self.hub.follow_city(session, body.city, body.snapshot)
        counts = await self.hub.counts(body.city)
        if body.snapshot:  # after the ack: the map's first picture without waiting a second
            task = asyncio.create_task(self.hub.send_snapshot(body.city, {session}))
            self.hub.marking.add(task)
            task.add_done_callback(self.hub.marking.discard)
        return counts

    async def _unfollow_city(self, session: Session, data: dict[str, Any], mid: MessageId) -> Any:
        body = CityFeed.model_validate(data)
        if not self.hub.unfollow_city(session, body.city):
            raise NotFound(f"this socket does not follow city {body.city!r}")
        return {"city": body.city}


class _Unavailable(RideflowError):
    status = 503
    title = "Service unavailable"


def _report(session: Session, future: asyncio.Future[None]) -> None:
    """A refused position without an id: its error, when its batch has been recorded."""
    if future.cancelled():
        return
    exc = future.exception()
    if isinstance(exc, Exception):
        session.send(error(None, exc))
