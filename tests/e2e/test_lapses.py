"""An offer whose dispatcher was killed with `kill -9` still lapses at its deadline: another
dispatcher process sweeps it and offers the order to the next driver."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.redis import keys
from tests.conftest import BLR, api_client, offset
from tests.fleet import (
    add_driver,
    answer,
    events_of,
    offered_to,
    pending_offer,
    request_ride,
    wait_for_status,
)
from tests.servers import Service, eventually


async def test_an_unanswered_offer_lapses_and_the_next_driver_is_offered(
    settings: Settings, services: Callable[..., Service], redis: Redis
) -> None:
    settings = settings.model_copy(update={"ride_offer_window_s": 0.5, "ride_deadline_s": 30.0})
    first = services("dispatcher", settings, name="dispatcher-a")
    async with api_client(settings) as c:
        await add_driver(c, "sleepy", offset(*BLR, north_m=200))
        await add_driver(c, "awake", offset(*BLR, north_m=900))
        ride_id = await request_ride(c, BLR)
        await wait_for_status(c, ride_id, {"OFFERED"})
        offer = await pending_offer(c, "sleepy")
        assert offer is not None
        # The dispatcher that made the offer dies; another sweeps its deadline.
        first.kill9()
        services("dispatcher", settings, name="dispatcher-b")
        await eventually(lambda: offered_to(c, ride_id, "awake"), 20, "the next driver's offer")

        lapsed = (await c.get(f"/v1/offers/{offer['offer_id']}")).json()
        assert lapsed["status"] == "EXPIRED"
        events = await events_of(c, ride_id)
        back = next(e for e in events if e["status"] == "SEARCHING" and e["driver_id"])
        assert back["driver_id"] == "sleepy" and "lapsed" in back["reason"]
        assert back["at"] >= offer["expires_at"]  # never before the deadline
        late = await answer(c, offer)
        assert late.status_code == 409 and "already EXPIRED" in late.json()["detail"]
        sleepy = (await c.get("/v1/drivers/sleepy")).json()
        assert sleepy["order_id"] is None and sleepy["status"] == "online"
        assert await redis.hget(keys.driver("blr", "sleepy"), "lapses") == "1"
        assert await redis.exists(keys.lease("blr", "sleepy")) == 0
