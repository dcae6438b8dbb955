"""The dashboard's ADMIN routes against a real Redis: the search the matcher runs, an order's
Redis commands, today's leaderboard counted by the completing step, and the page itself."""

from __future__ import annotations

import httpx

from rideflow.orders.store import utc_day
from tests.conftest import BLR, offset
from tests.fleet import add_driver


async def test_geosearch_ranks_the_pool_as_the_matcher_does(client: httpx.AsyncClient) -> None:
    await add_driver(client, "near", offset(*BLR, north_m=300), rating=4.0)
    await add_driver(client, "far", offset(*BLR, north_m=900), rating=5.0)
    await add_driver(client, "gone", offset(*BLR, north_m=100), online=False)
    q = {"city": "blr", "lat": BLR[0], "lng": BLR[1], "radius_km": 2}
    r = await client.get("/v1/admin/geosearch", params=q)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(h["rank"], h["driver_id"]) for h in body["hits"]] == [(1, "near"), (2, "far")]
    assert 295 < body["hits"][0]["distance_m"] < 305
    assert body["command"].startswith("GEOSEARCH rf:{blr}:pool FROMLONLAT")
    r = await client.get("/v1/admin/geosearch", params={**q, "strategy": "rating"})
    assert [h["driver_id"] for h in r.json()["hits"]] == ["far", "near"]
    r = await client.get("/v1/admin/geosearch", params={**q, "city": "xyz"})
    assert r.status_code == 404


async def test_an_orders_commands_and_the_leaderboard(client: httpx.AsyncClient) -> None:
    await add_driver(client, "D4", offset(*BLR, north_m=200))
    r = await client.post(
        "/v1/delivery/assign",
        json={"order_id": "ORD-1", "restaurant_id": "R1",
              "location": {"lat": BLR[0], "lng": BLR[1]}, "radius_km": 1},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    delivery = r.json()["delivery_id"]
    r = await client.get(f"/v1/admin/orders/{delivery}/commands")
    assert r.status_code == 200, r.text
    steps = r.json()["steps"]
    assert [(s["status"], s["script"]) for s in steps] == [
        ("QUEUED", "order_enqueue.lua"),
        ("SEARCHING", "order_begin.lua"),
        ("OFFERED", "offer_create.lua"),
    ]
    texts = [c["text"] for c in steps[2]["commands"]]
    assert any(t.startswith("SET rf:{blr}:lease:D4 ") and " NX PX 30000" in t for t in texts)
    assert all(c["explanation"] for s in steps for c in s["commands"])
    offer = (await client.get("/v1/drivers/D4/offers")).json()["offers"][0]
    r = await client.post(f"/v1/offers/{offer['offer_id']}/accept", json={"driver_id": "D4",
                          "token": offer["token"]})  # fmt: skip
    assert r.status_code == 200, r.text
    pin = (await client.get(f"/v1/deliveries/{delivery}")).json().get("pin")
    for step, body in (("arriving", {}), ("picked-up", {}), ("delivered", {"pin": pin})):
        r = await client.post(f"/v1/deliveries/{delivery}/{step}", json={"driver_id": "D4", **body})
        assert r.status_code == 200, (step, r.text)
    r = await client.get("/v1/admin/leaderboard", params={"city": "blr"})
    assert r.json() == {"city": "blr", "day": utc_day(), "drivers": [{"driver_id": "D4",
                        "trips": 1}]}  # fmt: skip
    r = await client.get(f"/v1/admin/orders/{delivery}/commands")
    assert r.json()["steps"][-1]["commands"][-1]["text"].startswith(
        "ZINCRBY rf:{blr}:leaderboard:<today> 1 D4"
    )
    assert (await client.get("/v1/admin/orders/blr-nope/commands")).status_code == 404


async def test_the_page_and_the_offline_docs_are_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/dashboard", headers={"Authorization": ""})
    assert page.status_code == 200 and "/dashboard/assets/dashboard.js" in page.text
    script = await client.get("/dashboard/assets/dashboard.js")
    assert script.status_code == 200 and "subscribe.city" in script.text
    docs = (await client.get("/docs")).text
    assert "/docs/assets/swagger-ui-bundle.js" in docs and "cdn.jsdelivr.net" not in docs
    assert (await client.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
    assert "cdn" not in (await client.get("/redoc")).text
