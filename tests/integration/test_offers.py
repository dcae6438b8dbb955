"""Offers through the app and a dispatcher in-process: accept, reject, lapse, fencing tokens, the
order state machine, and the seed's race of two orders for one driver. (An offer whose dispatcher
was killed lapses all the same: tests/e2e/test_lapses.py.)"""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.redis import keys
from rideflow.services import build_services
from tests.conftest import BLR, Workers, api_client, offset
from tests.fleet import (
    add_driver,
    answer,
    events_of,
    finish,
    offered_to,
    pending_offer,
    request_ride,
    take,
    wait_for_status,
)
from tests.servers import eventually


async def test_an_offer_is_accepted_only_by_its_driver_with_its_token(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "near", offset(*BLR, north_m=300))
        await add_driver(c, "other", offset(*BLR, north_m=2500))
        ride_id = await request_ride(c, BLR)
        ride = await wait_for_status(c, ride_id, {"OFFERED"})
        assert ride["driver"]["id"] == "near" and ride["offer_id"]

        offer = await pending_offer(c, "near")
        assert offer is not None and offer["offer_id"] == ride["offer_id"]
        assert offer["order_id"] == ride_id and offer["kind"] == "ride"
        assert offer["status"] == "PENDING" and offer["token"] >= 1
        assert await pending_offer(c, "other") is None
        driver = (await c.get("/v1/drivers/near")).json()
        assert driver["order_id"] == ride_id and driver["offer_id"] == offer["offer_id"]
        # The lease is held with the offer's token, for the window and its grace.
        lease = await redis.get(keys.lease("blr", "near"))
        assert lease == f"{offer['token']}|{ride_id}|{offer['offer_id']}"
        ttl = await redis.pttl(keys.lease("blr", "near"))
        window = settings.ride_offer_window_s * 1000 + settings.offer_lease_grace_ms
        assert 0 < ttl <= window

        wrong_token = await answer(c, offer, token=offer["token"] + 1)
        assert wrong_token.status_code == 409 and "fencing token" in wrong_token.json()["detail"]
        not_theirs = await answer(c, offer, driver_id="other")
        assert not_theirs.status_code == 409 and "made to driver near" in not_theirs.text
        assert (await c.get(f"/v1/rides/{ride_id}")).json()["status"] == "OFFERED"

        accepted = await answer(c, offer)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "ACCEPTED"
        assert accepted.json()["order_status"] == "ACCEPTED"
        changed_mind = await answer(c, offer, "reject")
        assert changed_mind.status_code == 409
        assert "already ACCEPTED" in changed_mind.json()["detail"]
        assert await redis.exists(keys.lease("blr", "near")) == 0
        assert await redis.zcard(keys.offers_due("blr")) == 0

        # Driver steps: in order, by the order's driver only.
        skip = await c.post(f"/v1/rides/{ride_id}/picked-up", json={"driver_id": "near"})
        assert skip.status_code == 409 and "only a ride that is DRIVER_ARRIVING" in skip.text
        stranger = await c.post(f"/v1/rides/{ride_id}/arriving", json={"driver_id": "other"})
        assert stranger.status_code == 409 and "held by near" in stranger.text
        done = await finish(c, ride_id)
        assert done["status"] == "COMPLETED"
        assert list(done["transitions"]) == [
            "QUEUED",
            "SEARCHING",
            "OFFERED",
            "ACCEPTED",
            "DRIVER_ARRIVING",
            "PICKED_UP",
            "COMPLETED",
        ]
        late_cancel = await c.post(f"/v1/rides/{ride_id}/cancel")
        assert late_cancel.status_code == 409 and "is COMPLETED" in late_cancel.text
        statuses = [e["status"] for e in await events_of(c, ride_id)]
        assert statuses == list(done["transitions"])

        # Back in the pool: the next ride is offered to them again.
        second = await wait_for_status(c, await request_ride(c, BLR, "r2"), {"OFFERED"})
        assert second["driver"]["id"] == "near"


async def test_a_rejection_moves_on_at_once_and_frees_the_driver_for_the_next_order(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    settings = settings.model_copy(update={"ride_deadline_s": 30.0})
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "a", offset(*BLR, north_m=200))
        await add_driver(c, "b", offset(*BLR, north_m=1500))
        ride_id = await request_ride(c, BLR)
        await wait_for_status(c, ride_id, {"OFFERED"})
        offer = await pending_offer(c, "a")
        assert offer is not None
        rejected = await answer(c, offer, "reject")
        assert rejected.status_code == 200 and rejected.json()["status"] == "REJECTED"
        # Released at once, not left to the lease's TTL: a is available again right away.
        assert await redis.exists(keys.lease("blr", "a")) == 0
        assert (await c.get("/v1/drivers/a")).json()["order_id"] is None

        ride = await wait_for_status(c, ride_id, {"OFFERED"})
        assert ride["driver"]["id"] == "b"  # the next-ranked driver
        assert await redis.sismember(keys.excluded("blr", ride_id), "a")
        events = await events_of(c, ride_id)
        assert [e["status"] for e in events] == [
            "QUEUED",
            "SEARCHING",
            "OFFERED",
            "SEARCHING",
            "OFFERED",
        ]
        assert events[3]["driver_id"] == "a" and "rejected" in events[3]["reason"]
        assert (await answer(c, offer, "accept")).status_code == 409  # answered already

        # The rejected driver is free at once: the next order goes to them.
        second_id = await request_ride(c, BLR, "r2")
        second = await wait_for_status(c, second_id, {"OFFERED"})
        assert second["driver"]["id"] == "a"
        offered_at = (await events_of(c, second_id))[-1]["at"]
        assert offered_at > events[3]["at"]

        # b rejects too: nobody else is near, and a (busy now, and excluded) is never offered it.
        offer_b = await pending_offer(c, "b")
        assert offer_b is not None
        assert (await answer(c, offer_b, "reject")).status_code == 200
        assert (await take(c, second_id))["status"] == "ACCEPTED"
        await finish(c, second_id)
        # a is free again, but excluded from the first ride: its searches pass them over.
        searched = (await c.get(f"/v1/rides/{ride_id}")).json()["attempts"]
        await eventually(lambda: _attempts_beyond(c, ride_id, searched + 1), 10, "two searches")
        again = (await c.get(f"/v1/rides/{ride_id}")).json()
        assert again["status"] == "SEARCHING" and again["driver"] is None
        assert await pending_offer(c, "a") is None


async def _attempts_beyond(c: httpx.AsyncClient, ride_id: str, n: int) -> bool:
    return bool((await c.get(f"/v1/rides/{ride_id}")).json()["attempts"] > n)


async def test_a_driver_who_lets_three_offers_lapse_in_a_row_goes_offline(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    settings = settings.model_copy(update={"ride_offer_window_s": 0.3, "ride_deadline_s": 30.0})
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "ghost", offset(*BLR, north_m=200))
        rides = []
        for n in range(3):
            ride_id = await request_ride(c, BLR, f"r{n}")
            rides.append(ride_id)
            await wait_for_status(c, ride_id, {"OFFERED"})
            # Excluded from this ride now; the lapse puts the driver back for the next one.
            await eventually(lambda i=ride_id: _not_offered(c, i), 10, "the offer to lapse")
        ghost = (await c.get("/v1/drivers/ghost")).json()
        assert ghost["status"] == "offline" and ghost["order_id"] is None
        assert await redis.zscore(keys.pool("blr"), "ghost") is None
        assert await redis.hget(keys.driver("blr", "ghost"), "lapses") == "0"
        # A fourth ride finds nobody.
        fourth = await request_ride(c, BLR, "r3")
        await eventually(lambda: _attempts_beyond(c, fourth, 1), 10, "two searches")
        assert await pending_offer(c, "ghost") is None
        ride = (await c.get(f"/v1/rides/{fourth}")).json()
        assert ride["status"] in {"QUEUED", "SEARCHING"}


async def _not_offered(c: httpx.AsyncClient, ride_id: str) -> bool:
    return bool((await c.get(f"/v1/rides/{ride_id}")).json()["status"] != "OFFERED")


async def test_cancelling_an_offered_ride_withdraws_the_offer_and_frees_the_driver(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "d", offset(*BLR, north_m=200))
        ride_id = await request_ride(c, BLR)
        await wait_for_status(c, ride_id, {"OFFERED"})
        offer = await pending_offer(c, "d")
        assert offer is not None
        cancelled = await c.post(f"/v1/rides/{ride_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
        assert (await c.get(f"/v1/offers/{offer['offer_id']}")).json()["status"] == "WITHDRAWN"
        refused = await answer(c, offer)
        assert refused.status_code == 409 and "WITHDRAWN" in refused.text
        assert await redis.exists(keys.lease("blr", "d")) == 0
        assert await redis.zcard(keys.offers_due("blr")) == 0
        assert (await c.get("/v1/drivers/d")).json()["order_id"] is None
        assert await redis.zscore(keys.pool("blr"), "d") is not None

        # Cancelling an accepted ride frees the driver as well.
        second = await request_ride(c, BLR, "r2")
        assert (await take(c, second))["status"] == "ACCEPTED"
        assert (await c.post(f"/v1/rides/{second}/cancel")).json()["status"] == "CANCELLED"
        assert await redis.zscore(keys.pool("blr"), "d") is not None


async def test_the_seed_race_two_orders_one_driver(settings: Settings, workers: Workers) -> None:
    """Two orders at once and one available driver nearby: exactly one is offered to them, the
    other to the next driver."""
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "D4", offset(*BLR, north_m=820))
        await add_driver(c, "D2", offset(*BLR, north_m=-1240))
        ids = await asyncio.gather(request_ride(c, BLR, "rider-a"), request_ride(c, BLR, "rider-b"))
        rides = [await wait_for_status(c, i, {"OFFERED"}) for i in ids]
    assert sorted(r["driver"]["id"] for r in rides) == ["D2", "D4"]


async def test_offer_ids_tokens_and_bodies_are_validated(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/offers/blr-x-y/accept", json={"driver_id": "d", "token": 1})
    assert r.status_code == 404
    r = await client.post("/v1/offers/nowhere-x-y/accept", json={"driver_id": "d", "token": 1})
    assert r.status_code == 404
    r = await client.post("/v1/offers/blr-x-y/accept", json={"driver_id": "d", "token": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "token"
    r = await client.post("/v1/offers/blr-x-y/reject", json={"token": 3})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "driver_id"
    r = await client.post("/v1/offers/bad id/accept", json={"driver_id": "d", "token": 3})
    assert r.status_code in (404, 422)
    assert (await client.get("/v1/drivers/nobody/offers")).status_code == 404


async def test_an_answer_after_the_deadline_is_refused_and_lapses_the_offer_itself(
    settings: Settings, redis: Redis
) -> None:
    """No dispatcher sweeps here: the late answer itself lets the offer lapse, so the order moves
    on even when every sweeper is down."""
    settings = settings.model_copy(update={"ride_offer_window_s": 0.2, "ride_deadline_s": 30.0})
    async with api_client(settings) as c:
        await add_driver(c, "late", offset(*BLR, north_m=100))
        ride_id = await request_ride(c, BLR)
        dispatcher = build_services(settings, redis).dispatcher
        outcome = await dispatcher.handle("blr", ride_id)
        assert outcome.status == "OFFERED" and outcome.offer is not None
        offer = await pending_offer(c, "late")
        assert offer is not None
        deadline_ms = outcome.offer.deadline_ms
        await eventually(lambda: redis_past_ms(redis, deadline_ms), 5, "the deadline")

        late = await answer(c, offer)
        assert late.status_code == 409
        assert "expired before it was answered" in late.json()["detail"]
        assert (await c.get(f"/v1/offers/{offer['offer_id']}")).json()["status"] == "EXPIRED"
        ride = (await c.get(f"/v1/rides/{ride_id}")).json()
        assert ride["status"] == "SEARCHING" and ride["driver"] is None
        assert (await c.get("/v1/drivers/late")).json()["order_id"] is None
        assert await redis.zscore(keys.pool("blr"), "late") is not None
        assert await redis.zcard(keys.offers_due("blr")) == 0
        # The order is back on the stream for the next search.
        entries = await redis.xrange(keys.requests("blr"))
        assert [e[1]["order"] for e in entries] == [ride_id, ride_id]


async def redis_past_ms(redis: Redis, deadline_ms: int) -> bool:
    seconds, micros = await redis.time()
    return bool(seconds * 1000 + micros // 1000 > deadline_ms)


async def test_going_offline_declines_the_pending_offer_and_a_replayed_answer_is_repeated(
    settings: Settings, workers: Workers, redis: Redis
) -> None:
    settings = settings.model_copy(update={"ride_deadline_s": 30.0})
    workers.dispatcher(settings)
    async with api_client(settings) as c:
        await add_driver(c, "leaving", offset(*BLR, north_m=200))
        await add_driver(c, "staying", offset(*BLR, north_m=1200))
        ride_id = await request_ride(c, BLR)
        await wait_for_status(c, ride_id, {"OFFERED"})
        offer = await pending_offer(c, "leaving")
        assert offer is not None
        gone = await c.put("/v1/drivers/leaving/status", json={"status": "offline"})
        assert gone.status_code == 200
        assert gone.json()["status"] == "offline" and gone.json()["offer_id"] is None
        await eventually(lambda: offered_to(c, ride_id, "staying"), 10, "the next driver")
        back = next(
            e
            for e in await events_of(c, ride_id)
            if e["driver_id"] == "leaving" and e["status"] == "SEARCHING"
        )
        assert back["reason"] == "driver leaving went offline"
        assert await redis.zscore(keys.pool("blr"), "leaving") is None
        assert await redis.hget(keys.driver("blr", "leaving"), "lapses") == "0"

        # The same accept twice (its first reply lost): the same answer, not a conflict.
        second = await pending_offer(c, "staying")
        assert second is not None
        first = await answer(c, second)
        again = await answer(c, second)
        assert first.status_code == again.status_code == 200
        assert again.json()["status"] == "ACCEPTED" and again.json()["at"] == first.json()["at"]
        rejected_after = await answer(c, second, "reject")
        assert rejected_after.status_code == 409 and "already ACCEPTED" in rejected_after.text
