"""The WebSocket gateway at /v1/ws: a real uvicorn, real `websockets` clients, a real dispatcher,
a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rideflow.auth.principal import Role
from rideflow.auth.revocations import keep_for, revoke_subject
from rideflow.config import Settings
from rideflow.orders.schemas import RideCreate
from rideflow.redis.connections import open_redis
from rideflow.services import build_services
from tests.auth import access_token
from tests.conftest import BLR, Workers, offset, settings_for
from tests.fleet import add_driver, events_of, request_ride, wait_for_status
from tests.servers import RedisServer, eventually
from tests.sockets import admin_client, opened, served, ws_url


async def test_no_or_bad_token_is_refused_with_401_before_the_upgrade(settings: Settings) -> None:
    async with served(settings) as url:
        for offered in ([], ["rideflow.v1"], ["rideflow.v1", "bearer.not-a-jwt"]):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url(url), subprotocols=offered or None):  # type: ignore[arg-type]
                    pass
            response = refused.value.response
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert orjson.loads(response.body)["status"] == 401
        expired = access_token(settings, "c1", Role.CUSTOMER, ttl_s=-60)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{ws_url(url)}?access_token={expired}"):
                pass
        assert refused.value.response.status_code == 401
        assert b"expired" in refused.value.response.body


async def test_the_token_is_taken_from_the_subprotocol_or_the_query(settings: Settings) -> None:
    async with served(settings) as url:
        async with opened(settings, url, "c1", Role.CUSTOMER) as s:
            assert s.conn.subprotocol == "rideflow.v1"
        async with opened(settings, url, "c1", Role.CUSTOMER, via_query=True) as s:
            assert s.conn.subprotocol is None
            assert (await s.request("pong"))["type"] == "ack"


async def test_compression_is_declined_unless_configured_and_big_messages_close_1009(
    settings: Settings,
) -> None:
    # The `websockets` client offers permessage-deflate, as browsers do.
    async with served(settings) as url, opened(settings, url, "d1", Role.DRIVER) as s:
        assert s.conn.protocol.extensions == []
        await s.send("position", {"lat": 12.97, "lng": 77.59, "pad": "x" * 70_000})
        with pytest.raises(ConnectionClosed) as closed:
            await s.next()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    compressing = settings.model_copy(
        update={"ws_compression": True, "ws_max_message_bytes": 200_000}
    )
    async with served(compressing) as url, opened(compressing, url, "d1", Role.DRIVER) as s:
        assert [e.name for e in s.conn.protocol.extensions] == ["permessage-deflate"]
        big = {"lat": 12.97, "lng": 77.59, "pad": "x" * 70_000}
        reply = await s.request("position", big)
        assert reply["type"] == "error"  # taken and read: refused by validation, not size
        assert reply["data"]["status"] == 422


async def test_revoked_tokens_close_their_sockets_and_are_refused_at_the_handshake(
    settings: Settings, redis: Redis
) -> None:
    async with served(settings) as url, opened(settings, url, "c1", Role.CUSTOMER) as s:
        token = access_token(settings, "c2", Role.CUSTOMER)
        async with connect(f"{ws_url(url)}?access_token={token}") as other:
            await other.recv()  # hello
            await revoke_subject(redis, "c1", keep_for(settings))  # as `users disable` does
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await s.next()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            assert "revoked" in closed.value.rcvd.reason
            # Another account's socket is untouched.
            await other.send(orjson.dumps({"type": "pong", "id": 1, "data": {}}).decode())
            assert orjson.loads(await other.recv())["type"] == "ack"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{ws_url(url)}?access_token={s.token}"):
                pass
        assert refused.value.response.status_code == 401
        async with opened(settings, url, "c1", Role.CUSTOMER) as again:  # a token issued since
            assert (await again.request("pong"))["type"] == "ack"


async def test_messages_outside_the_sockets_role_or_protocol_get_error_replies(
    settings: Settings,
) -> None:
    async with served(settings) as url, opened(settings, url, "c1", Role.CUSTOMER) as s:
        reply = await s.request("offer.accept", {"offer_id": "blr-x-1", "token": 1})
        assert reply["type"] == "error"
        assert reply["data"]["status"] == 403
        assert "DRIVER" in reply["data"]["detail"]
        reply = await s.request("subscribe.city", {"city": "blr"})
        assert reply["data"]["status"] == 403
        reply = await s.request("fly", {})
        assert reply["data"]["status"] == 422
        assert reply["data"]["errors"][0]["field"] == "type"
        reply = await s.request("subscribe", {"order_id": "blr-nope"})
        assert (reply["type"], reply["data"]["status"]) == ("error", 404)
        reply = await s.request("subscribe", {"order_id": "blr-x", "after": "yesterday"})
        assert reply["data"]["status"] == 404 or reply["data"]["errors"][0]["field"] == "after"
        await s.conn.send("{not json")
        bad = await s.next("error")
        assert (bad["id"], bad["data"]["status"]) == (None, 422)
        assert (await s.request("pong"))["type"] == "ack"  # the socket is still open


async def test_a_customer_cannot_follow_another_customers_order(
    settings: Settings, workers: Workers
) -> None:
    async with served(settings) as url, admin_client(settings, url) as http:
        ride = await request_ride(http, BLR, rider="c-owner")
        async with opened(settings, url, "c-other", Role.CUSTOMER) as s:
            reply = await s.request("subscribe", {"order_id": ride})
            assert (reply["type"], reply["data"]["status"]) == ("error", 404)
        async with opened(settings, url, "c-owner", Role.CUSTOMER) as s:
            reply = await s.request("subscribe", {"order_id": ride})
            assert reply["type"] == "ack", reply
            assert reply["data"] == {"order_id": ride, "replayed": 1}  # QUEUED


async def _statuses_until(s: Any, final: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        m = await s.next("event")
        seen.append(m)
        if m["data"]["status"] == final:
            return seen


async def test_a_driver_is_pushed_the_offer_and_accepts_over_the_socket(
    settings: Settings, workers: Workers
) -> None:
    workers.dispatcher(settings)
    async with served(settings) as url, admin_client(settings, url) as http:
        await add_driver(http, "D1", offset(*BLR, north_m=150))
        async with (
            opened(settings, url, "D1", Role.DRIVER) as driver,
            opened(settings, url, "rider-9", Role.CUSTOMER) as customer,
        ):
            ride = await request_ride(http, BLR, rider="rider-9")
            assert (await customer.request("subscribe", {"order_id": ride}))["type"] == "ack"
            offer = await driver.next("offer")
            assert offer["data"]["order_id"] == ride
            assert offer["data"]["status"] == "PENDING"
            assert offer["data"]["token"] >= 1 and offer["data"]["expires_at"]
            assert offer["data"]["pickup"] == {"lat": BLR[0], "lng": BLR[1]}
            # A stale token is refused as over REST, and nothing changes.
            wrong = await driver.request(
                "offer.accept", {"offer_id": offer["data"]["offer_id"], "token": 999_999}
            )
            assert (wrong["type"], wrong["data"]["status"]) == ("error", 409)
            assert "fencing token" in wrong["data"]["detail"]
            accepted = await driver.request(
                "offer.accept",
                {"offer_id": offer["data"]["offer_id"], "token": offer["data"]["token"]},
            )
            assert accepted["type"] == "ack", accepted
            assert accepted["data"]["order_status"] == "ACCEPTED"
            assert (await driver.next("event"))["data"]["status"] == "ACCEPTED"
            # The driver's position, holding the order, reaches the customer.
            moved = offset(*BLR, north_m=100)
            reply = await driver.request("position", {"lat": moved[0], "lng": moved[1]})
            assert reply == {"type": "ack", "id": reply["id"], "data": {}}
            bad = await driver.request("position", {"lat": 123, "lng": 77.5})
            assert (bad["data"]["status"], bad["data"]["errors"][0]["field"]) == (422, "lat")
            fix = await customer.next("position")
            assert fix["data"]["driver_id"] == "D1" and fix["data"]["order_id"] == ride
            assert (fix["data"]["lat"], fix["data"]["lng"]) == moved
            for step in ("arriving", "picked-up", "complete"):
                r = await http.post(f"/v1/rides/{ride}/{step}", json={"driver_id": "D1"})
                assert r.status_code == 200, r.text
            seen = await _statuses_until(customer, "COMPLETED")
            driver_seen = await _statuses_until(driver, "COMPLETED")
            stored = await events_of(http, ride)
            assert [(m["id"], m["data"]["status"]) for m in seen] == [
                (e["id"], e["status"]) for e in stored
            ]
            assert [e["status"] for e in stored] == [
                "QUEUED",
                "SEARCHING",
                "OFFERED",
                "ACCEPTED",
                "DRIVER_ARRIVING",
                "PICKED_UP",
                "COMPLETED",
            ]
            assert [m["data"]["status"] for m in driver_seen] == [
                "DRIVER_ARRIVING",
                "PICKED_UP",
                "COMPLETED",
            ]


async def test_a_rejected_offer_is_withdrawn_and_the_next_driver_is_pushed_it(
    settings: Settings, workers: Workers
) -> None:
    workers.dispatcher(settings)
    async with served(settings) as url, admin_client(settings, url) as http:
        await add_driver(http, "D1", offset(*BLR, north_m=100))
        await add_driver(http, "D2", offset(*BLR, north_m=900))
        async with (
            opened(settings, url, "D1", Role.DRIVER) as d1,
            opened(settings, url, "D2", Role.DRIVER) as d2,
        ):
            ride = await request_ride(http, BLR)
            first = (await d1.next("offer"))["data"]
            reply = await d1.request(
                "offer.reject", {"offer_id": first["offer_id"], "token": first["token"]}
            )
            assert reply["data"]["status"] == "REJECTED"
            withdrawn = await d1.next("offer.withdrawn")
            assert withdrawn["data"]["offer_id"] == first["offer_id"]
            assert withdrawn["data"]["outcome"] == "REJECTED"
            second = (await d2.next("offer"))["data"]
            assert second["order_id"] == ride and second["token"] > first["token"]
            reply = await d2.request("status", {"status": "offline"})
            assert reply["data"]["status"] == "offline"
            assert (await d2.next("offer.withdrawn"))["data"]["offer_id"] == second["offer_id"]


async def test_a_customer_who_resumes_gets_exactly_the_missing_transitions(
    settings: Settings, workers: Workers
) -> None:
    workers.dispatcher(settings)
    async with served(settings) as url, admin_client(settings, url) as http:
        await add_driver(http, "D1", offset(*BLR, north_m=150))
        ride = await request_ride(http, BLR, rider="rider-3")
        async with opened(settings, url, "rider-3", Role.CUSTOMER) as s:
            await s.request("subscribe", {"order_id": ride})
            seen = await _statuses_until(s, "OFFERED")
        last = seen[-1]["id"]
        offer = (await http.get("/v1/drivers/D1/offers")).json()["offers"][0]
        r = await http.post(
            f"/v1/offers/{offer['offer_id']}/accept",
            json={"driver_id": "D1", "token": offer["token"]},
        )
        assert r.status_code == 200, r.text
        for step in ("arriving", "picked-up", "complete"):
            assert (
                await http.post(f"/v1/rides/{ride}/{step}", json={"driver_id": "D1"})
            ).is_success
        async with opened(settings, url, "rider-3", Role.CUSTOMER) as s:
            reply = await s.request("subscribe", {"order_id": ride, "after": last})
            assert reply["data"]["replayed"] == 4
            rest = [await s.next("event") for _ in range(4)]
        assert [m["data"]["status"] for m in seen + rest] == [
            "QUEUED",
            "SEARCHING",
            "OFFERED",
            "ACCEPTED",
            "DRIVER_ARRIVING",
            "PICKED_UP",
            "COMPLETED",
        ]
        assert [m["id"] for m in seen + rest] == [e["id"] for e in await events_of(http, ride)]


@pytest.mark.timeout(180)
async def test_a_thousand_reconnects_lose_no_transition_and_duplicate_none(
    settings: Settings, workers: Workers
) -> None:
    """Each round: connect, subscribe to every ride so far with the last id seen, read what the
    replay and the live feed bring up to a reply, disconnect. Every tenth round the rides move
    one step (a new ride, an accept, or a driver step) while the dispatcher works beside."""
    workers.dispatcher(settings)
    async with served(settings) as url, admin_client(settings, url) as http:
        await add_driver(http, "D1", offset(*BLR, north_m=150))
        rides: list[str] = []
        seen: dict[str, list[str]] = {}
        steps = _ride_steps(http, rides)

        async def reconnect() -> None:
            async with opened(settings, url, "rider-7", Role.CUSTOMER) as s:
                for ride in rides:
                    after = seen[ride][-1] if seen.get(ride) else None
                    await s.request("subscribe", {"order_id": ride, "after": after})
                await s.request("pong")  # live events up to here are in the inbox
                while s.inbox:
                    m = s.inbox.popleft()
                    if m["type"] == "event":
                        seen.setdefault(m["data"]["order_id"], []).append(m["id"])

        for round_ in range(1000):
            if round_ % 10 == 0:
                await anext(steps, None)
            await reconnect()
        # The last ride settles (the dispatcher offers it), then one more round owes everything.
        await wait_for_status(
            http, rides[-1], {"OFFERED", "ACCEPTED", "DRIVER_ARRIVING", "PICKED_UP", "COMPLETED"}
        )
        await reconnect()
        assert len(rides) == 20
        for ride in rides:
            assert seen[ride] == [e["id"] for e in await events_of(http, ride)]


async def _ride_steps(http: httpx.AsyncClient, rides: list[str]) -> Any:
    """One step at a time: request a ride, accept its offer, arriving, picked up, complete."""
    while True:
        # A fresh position with every ride: the test outlasts the stale window on a busy machine.
        here = offset(*BLR, north_m=150)
        r = await http.put("/v1/drivers/D1/location", json={"lat": here[0], "lng": here[1]})
        assert r.status_code == 204, r.text
        ride = await request_ride(http, BLR, rider="rider-7")
        rides.append(ride)
        yield
        order = await wait_for_status(http, ride, {"OFFERED"})
        offer = (await http.get(f"/v1/offers/{order['offer_id']}")).json()
        r = await http.post(
            f"/v1/offers/{offer['offer_id']}/accept",
            json={"driver_id": offer["driver_id"], "token": offer["token"]},
        )
        assert r.status_code == 200, r.text
        yield
        for step in ("arriving", "picked-up", "complete"):
            r = await http.post(f"/v1/rides/{ride}/{step}", json={"driver_id": "D1"})
            assert r.status_code == 200, r.text
            yield


async def test_an_admin_city_feed_gets_every_transition_and_driver_counts(
    flushed: RedisServer,
) -> None:
    settings = settings_for(flushed.url, ws_counts_every_s=0.05)
    async with served(settings) as url, admin_client(settings, url) as http:
        await add_driver(http, "D1", offset(*BLR, north_m=150))
        async with opened(settings, url, "admin-1", Role.ADMIN) as s:
            reply = await s.request("subscribe.city", {"city": "blr"})
            assert reply["data"] == {"city": "blr", "available": 1, "active": 1}
            assert (await s.request("subscribe.city", {"city": "atlantis"}))["data"][
                "status"
            ] == 404
            ride = await request_ride(http, BLR, rider="anyone")
            queued = await s.next("event")
            assert (queued["data"]["order_id"], queued["data"]["status"]) == (ride, "QUEUED")
            count = await s.next("drivers.count")
            assert count["data"] == {"city": "blr", "available": 1, "active": 1}
            # An admin may follow any order too.
            assert (await s.request("subscribe", {"order_id": ride}))["type"] == "ack"


async def test_a_slow_consumer_is_closed_with_1013_while_another_keeps_receiving(
    flushed: RedisServer,
) -> None:
    """The slow client stops reading: its kernel buffers fill (kept small here), then the
    server's send queue (64), and it is closed with 1013; the fast one receives every event."""
    settings = settings_for(flushed.url, ws_send_queue=64, ws_heartbeat_s=300)
    redis = await open_redis(settings, "test")
    orders = build_services(settings, redis).orders
    closed_before = REGISTRY.get_sample_value(SLOW_CLOSED) or 0
    async with (
        served(settings, send_buffer=8192) as url,
        opened(settings, url, "admin-slow", Role.ADMIN, small_buffer=True, max_queue=1) as slow,
        opened(settings, url, "admin-fast", Role.ADMIN) as fast,
    ):
        for s in (slow, fast):
            assert (await s.request("subscribe.city", {"city": "blr"}))["type"] == "ack"
        flood, received = 3000, 0
        while received < flood:
            await asyncio.gather(
                *(
                    orders.create_ride(RideCreate.model_validate(_ride(f"r{received + i}")))
                    for i in range(20)
                )
            )
            for _ in range(20):
                assert (await fast.next("event"))["data"]["status"] == "QUEUED"
                received += 1
        # The slow client catches up: what the buffers held, then the close.
        held = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await slow.conn.recv()
                held += 1
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013
        assert "fell behind" in closed.value.rcvd.reason
        assert held < flood
        assert (await fast.request("pong"))["type"] == "ack"
        # Counted once for /metrics, the fast one not at all.
        assert REGISTRY.get_sample_value(SLOW_CLOSED) == closed_before + 1
    await redis.aclose()


SLOW_CLOSED = "rideflow_websocket_slow_consumers_closed_total"


def _ride(rider: str) -> dict[str, Any]:
    return {
        "rider_id": rider,
        "pickup": {"lat": BLR[0], "lng": BLR[1]},
        "dropoff": {"lat": BLR[0] + 0.01, "lng": BLR[1]},
    }


async def test_a_driver_who_misses_two_pings_is_closed_and_taken_offline(
    flushed: RedisServer,
) -> None:
    settings = settings_for(flushed.url, ws_heartbeat_s=0.1)
    async with served(settings) as url, admin_client(settings, url) as http:
        await add_driver(http, "D1", offset(*BLR, north_m=150))
        await add_driver(http, "D2", offset(*BLR, north_m=250))
        async with (
            opened(settings, url, "D1", Role.DRIVER) as silent,
            opened(settings, url, "D2", Role.DRIVER) as alive,
        ):
            pings = 0
            while pings < 5:  # D2 answers every ping and stays
                m = await alive.conn.recv()
                ping = orjson.loads(m)
                if ping["type"] == "ping":
                    pings += 1
                    await alive.send("pong", {}, ping["id"])
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await silent.conn.recv()  # pings, unanswered
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408

            async def offline() -> bool:
                return (await http.get("/v1/drivers/D1")).json()["status"] == "offline"

            await eventually(offline, 10, "D1 taken offline")
            assert (await http.get("/v1/drivers/D2")).json()["status"] == "online"


async def test_positions_from_many_sockets_are_recorded_and_refusals_reach_their_sender(
    settings: Settings,
) -> None:
    async with served(settings) as url, admin_client(settings, url) as http:
        drivers = [f"P{i}" for i in range(12)]
        for d in drivers:
            await add_driver(http, d, BLR, online=False)
        async with contextlib.AsyncExitStack() as stack:
            sockets = [
                await stack.enter_async_context(opened(settings, url, d, Role.DRIVER))
                for d in drivers
            ]
            places = [offset(*BLR, north_m=10 * i) for i in range(len(drivers))]

            async def report(i: int) -> list[dict[str, Any]]:
                s = sockets[i]
                far = {"lat": 51.5, "lng": -0.12}  # outside every service area
                good = {"lat": places[i][0], "lng": places[i][1]}
                return [
                    await s.request("position", p) for p in (good, far) if i % 3 == 0 or p is good
                ]

            replies = await asyncio.gather(*(report(i) for i in range(len(drivers))))
            # Without an id, a position gets no reply, and a refusal an error with no id.
            await sockets[1].send("position", {"lat": places[1][0], "lng": places[1][1]})
            await sockets[1].send("position", {"lat": 51.5, "lng": -0.12})
            refused = await sockets[1].next("error")
            assert refused["id"] is None
            assert "outside every service area" in refused["data"]["detail"]
            assert not [m for m in sockets[1].inbox if m["type"] == "ack"]
        for i, (d, answers) in enumerate(zip(drivers, replies, strict=True)):
            assert answers[0]["type"] == "ack", answers
            if i % 3 == 0:
                assert answers[1]["type"] == "error"
                assert "outside every service area" in answers[1]["data"]["detail"]
            position = (await http.get(f"/v1/drivers/{d}")).json()["position"]
            assert (position["lat"], position["lng"]) == places[i]
