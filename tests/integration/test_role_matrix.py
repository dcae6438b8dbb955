"""Who may call what: every route of the OpenAPI document, called by every kind of caller, answers
the status this table says. A route without a row fails the test, so none ships unguarded.

The callers: anonymous; customers cA and cB; drivers dX and dY; ADMIN; and four tokens that are
not ours (expired, signed with another key, `alg: none`, another audience), which must get
exactly what an anonymous caller gets. The world: cA's ride R, offered to and accepted by dX;
cA's delivery D (cancelled, no driver); cA's food order F; cA's job J; a restaurant with a menu.

"ok" is 2xx, 304 or 409 (the caller passed the guard; the order may have moved on since), "pass"
is anything but 401 and 403 (rows for routes another branch adds, whose bodies this test does
not know)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from rideflow.api import access
from rideflow.api.app import create_app
from rideflow.api.security import allowed_roles
from rideflow.auth.principal import Role
from rideflow.config import Settings
from tests import auth
from tests.conftest import BLR, Workers, api_client, offset, settings_for
from tests.fleet import add_driver, wait_for_status
from tests.food import new_item, new_restaurant
from tests.record import record_database
from tests.servers import RedisServer

CALLERS = ["anon", "cA", "cB", "dX", "dY", "admin"]
"""The table's columns, in order."""
BAD_TOKENS = ["expired", "other-key", "alg-none", "wrong-audience"]
CALL_ORDER = ["anon", *BAD_TOKENS, "cB", "dY", "cA", "dX", "admin"]
"""Strangers first, so they meet the world as it was set up; owners and ADMIN after."""

ANY = "401 ok ok ok ok ok"
ADMIN = "401 403 403 403 403 ok"
PUBLIC = "200 200 200 200 200 200"
CUSTOMERS = "401 ok ok 403 403 ok"
"""A customer's creation: for themself."""
ORDER_A = "401 ok 404 ok 404 ok"
"""cA's ride held by dX: read by its customer and its driver; 404 to the others."""
DRIVER_STEP_A = "401 403 403 ok 404 ok"
CANCEL_A = "401 ok 404 403 403 ok"
HISTORY_A = "401 ok 403 403 403 ok"
"""`?customer_id=cA`: cB naming cA is 403; drivers may not list."""
DELIVERY_A = "401 ok 404 404 404 ok"
"""cA's delivery, no driver: nobody else sees it."""
DELIVERY_STEP_A = "401 403 403 404 404 ok"
DRIVER_X = "401 403 403 ok 403 ok"
"""A path naming dX: dY naming another driver is 403."""
OFFER_X = "401 403 403 ok 404 ok"
FOOD_ORDER_A = "401 ok 404 403 403 ok"
JOB_A = "401 ok 404 404 404 ok"

TABLE: dict[tuple[str, str], str] = {
    ("POST", "/v1/rides"): CUSTOMERS,
    ("GET", "/v1/rides"): HISTORY_A,
    ("GET", "/v1/rides/{ride_id}"): ORDER_A,
    ("GET", "/v1/rides/{ride_id}/events"): ORDER_A,
    ("POST", "/v1/rides/{ride_id}/arriving"): DRIVER_STEP_A,
    ("POST", "/v1/rides/{ride_id}/picked-up"): DRIVER_STEP_A,
    ("POST", "/v1/rides/{ride_id}/complete"): DRIVER_STEP_A,
    ("POST", "/v1/rides/{ride_id}/cancel"): CANCEL_A,
    ("POST", "/v1/deliveries"): CUSTOMERS,
    ("GET", "/v1/deliveries"): HISTORY_A,
    ("GET", "/v1/deliveries/{delivery_id}"): DELIVERY_A,
    ("GET", "/v1/deliveries/{delivery_id}/events"): DELIVERY_A,
    ("POST", "/v1/deliveries/{delivery_id}/arriving"): DELIVERY_STEP_A,
    ("POST", "/v1/deliveries/{delivery_id}/picked-up"): DELIVERY_STEP_A,
    ("POST", "/v1/deliveries/{delivery_id}/delivered"): DELIVERY_STEP_A,
    ("POST", "/v1/deliveries/{delivery_id}/cancel"): CANCEL_A,
    ("POST", "/v1/delivery/assign"): ADMIN,  # and merchants' back ends (test_attacks)
    ("GET", "/v1/offers/{offer_id}"): OFFER_X,
    ("POST", "/v1/offers/{offer_id}/accept"): OFFER_X,
    ("POST", "/v1/offers/{offer_id}/reject"): OFFER_X,
    ("POST", "/v1/drivers"): ADMIN,
    ("GET", "/v1/drivers/{driver_id}"): DRIVER_X,
    ("GET", "/v1/drivers/{driver_id}/offers"): DRIVER_X,
    ("PUT", "/v1/drivers/{driver_id}/status"): DRIVER_X,
    ("PUT", "/v1/drivers/{driver_id}/location"): DRIVER_X,
    ("POST", "/v1/drivers/locations"): ADMIN,  # and fleet gateways' back ends (test_attacks)
    ("POST", "/v1/jobs"): ANY,
    ("GET", "/v1/jobs"): ADMIN,
    ("GET", "/v1/jobs/stats"): ADMIN,
    ("GET", "/v1/jobs/dead"): ADMIN,
    ("GET", "/v1/jobs/{job_id}"): JOB_A,
    ("POST", "/v1/jobs/{job_id}/cancel"): JOB_A,
    ("POST", "/v1/jobs/{job_id}/redrive"): ADMIN,
    ("POST", "/v1/restaurants"): ADMIN,
    ("GET", "/v1/restaurants"): ANY,
    ("GET", "/v1/restaurants/{restaurant_id}"): ANY,
    ("PATCH", "/v1/restaurants/{restaurant_id}"): ADMIN,
    ("DELETE", "/v1/restaurants/{restaurant_id}"): ADMIN,
    ("GET", "/v1/restaurants/{restaurant_id}/menu"): ANY,
    ("POST", "/v1/restaurants/{restaurant_id}/menu"): ADMIN,
    ("PATCH", "/v1/restaurants/{restaurant_id}/menu/{item_id}"): ADMIN,
    ("DELETE", "/v1/restaurants/{restaurant_id}/menu/{item_id}"): ADMIN,
    ("POST", "/v1/food-orders"): CUSTOMERS,
    ("GET", "/v1/food-orders/{order_id}"): FOOD_ORDER_A,
    ("POST", "/request-ride"): CUSTOMERS,
    ("POST", "/submit-job"): ANY,
    ("GET", "/job-status/{job_id}"): JOB_A,
    ("GET", "/v1/admin/analytics"): ADMIN,
    ("GET", "/v1/admin/drivers/nearest"): ADMIN,
    ("GET", "/v1/admin/geosearch"): "401 403 403 403 403 pass",  # needs ?city&lat&lng
    ("GET", "/v1/admin/orders/{order_id}/commands"): "401 403 403 403 403 pass",  # F: 404
    ("GET", "/v1/admin/leaderboard"): "401 403 403 403 403 pass",  # needs ?city
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): ADMIN,
}

ACCOUNT_PUBLIC = "pass pass pass pass pass pass"
ACCOUNT_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/auth/register"): ACCOUNT_PUBLIC,
    ("POST", "/v1/auth/token"): ACCOUNT_PUBLIC,
    ("POST", "/v1/auth/refresh"): ACCOUNT_PUBLIC,
    ("POST", "/v1/auth/logout"): ACCOUNT_PUBLIC,
    ("POST", "/v1/auth/password-reset"): ACCOUNT_PUBLIC,
    ("POST", "/v1/auth/password-reset/confirm"): ACCOUNT_PUBLIC,
    ("GET", "/v1/me"): "401 pass pass pass pass pass",
    ("POST", "/v1/admin/api-keys"): "401 403 403 403 403 pass",
    ("GET", "/v1/admin/api-keys"): "401 403 403 403 403 pass",
    ("DELETE", "/v1/admin/api-keys/{key_id}"): "401 403 403 403 403 pass",
}
"""The account routes (`api/auth.py`)."""


def expected(row: str) -> dict[str, str]:
    cells = row.split()
    assert len(cells) == len(CALLERS), row
    return dict(zip(CALLERS, cells, strict=True))


def admits(cell: str, status: int) -> bool:
    if cell == "ok":
        return 200 <= status < 400 or status == 409
    if cell == "pass":
        return status not in (401, 403)
    return status == int(cell)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def foreign_tokens(settings: Settings) -> dict[str, str]:
    """Tokens that are not ours, each for an ADMIN, so that only their flaw refuses them."""
    now = int(time.time())
    claims = {
        "sub": auth.ADMIN_ID,
        "role": "ADMIN",
        "jti": "j-bad",
        "iat": now,
        "exp": now + 600,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    secret = auth.TEST_JWT_SECRET.encode()
    leeway = settings.jwt_leeway_s
    expired = {**claims, "iat": now - 7200, "exp": now - 3600 - int(leeway)}
    return {
        "expired": jwt.encode(expired, secret, algorithm="HS256"),
        "other-key": jwt.encode(claims, b"another-key-" + b"k" * 32, algorithm="HS256"),
        "alg-none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        "wrong-audience": jwt.encode({**claims, "aud": "someone-else"}, secret, algorithm="HS256"),
    }


@dataclass
class World:
    settings: Settings
    ids: dict[str, str]
    token: int
    headers: dict[str, dict[str, str]]


PICKUP = {"lat": BLR[0], "lng": BLR[1]}
DROPOFF = {"lat": BLR[0] + 0.02, "lng": BLR[1] + 0.01}


@pytest.fixture
async def world(
    flushed: RedisServer, tmp_path: Path, workers: Workers
) -> AsyncIterator[tuple[World, httpx.AsyncClient]]:
    async with record_database("sqlite", tmp_path) as url:
        settings = settings_for(flushed.url, database_url=url, ride_offer_window_s=120.0)
        headers = {
            "anon": {},
            "cA": auth.customer(settings, "cA"),
            "cB": auth.customer(settings, "cB"),
            "dX": auth.driver(settings, "dX"),
            "dY": auth.driver(settings, "dY"),
            "admin": auth.admin(settings),
        }
        headers |= {
            k: {"Authorization": f"Bearer {t}"} for k, t in foreign_tokens(settings).items()
        }
        async with api_client(settings, headers={}) as c:
            ids = await build(settings, c, headers, workers)
            token = int(ids.pop("token"))
            yield World(settings, ids, token, headers), c


async def build(
    settings: Settings, c: httpx.AsyncClient, h: dict[str, dict[str, str]], workers: Workers
) -> dict[str, str]:
    """The world the table is about, put in place through the API."""
    admin = c  # as ADMIN while the world is built; anonymous again after
    c.headers.update(h["admin"])
    await add_driver(admin, "dX", BLR)
    await add_driver(admin, "dY", offset(*BLR, north_m=900), online=False)
    # cA's ride, offered to dX by a dispatcher and accepted by them.
    dispatcher = workers.dispatcher(settings)
    r = await c.post("/v1/rides", json={"pickup": PICKUP, "dropoff": DROPOFF}, headers=h["cA"])
    assert r.status_code == 202, r.text
    ride = r.json()["ride_id"]
    offered = await wait_for_status(admin, ride, {"OFFERED"})
    offer = (await c.get(f"/v1/offers/{offered['offer_id']}", headers=h["dX"])).json()
    r = await c.post(
        f"/v1/offers/{offer['offer_id']}/accept", json={"token": offer["token"]}, headers=h["dX"]
    )
    assert r.status_code == 200, r.text
    await dispatcher.stop()
    # dY free for the synchronous assignment; cA's delivery cancelled before anyone took it.
    r = await admin.put("/v1/drivers/dY/status", json={"status": "online"})
    assert r.status_code == 200, r.text
    r = await c.post("/v1/deliveries", json={"pickup": PICKUP, "dropoff": DROPOFF}, headers=h["cA"])
    assert r.status_code == 202, r.text
    delivery = r.json()["delivery_id"]
    r = await c.post(f"/v1/deliveries/{delivery}/cancel", headers=h["cA"])
    assert r.status_code == 200, r.text
    restaurant = await new_restaurant(admin)
    item = (await new_item(admin, restaurant))["id"]
    spare_item = (await new_item(admin, restaurant, name="Spare"))["id"]
    spare = await new_restaurant(admin, name="Spare")
    food = {"restaurant_id": restaurant, "items": [{"item_id": item, "qty": 1}], "dropoff": DROPOFF}
    r = await c.post("/v1/food-orders", json=food, headers=h["cA"])
    assert r.status_code == 202, r.text
    food_order = r.json()["order_id"]
    r = await c.post("/v1/jobs", json={"task": "test_work", "delay": 600}, headers=h["cA"])
    assert r.status_code == 202, r.text
    job = r.json()["job_id"]
    pin = (await c.get(f"/v1/rides/{ride}", headers=h["cA"])).json()["pin"]
    r = await admin.post("/v1/admin/api-keys", json={"name": "matrix", "role": "CUSTOMER"})
    assert r.status_code == 201, r.text
    del c.headers["Authorization"]
    return {
        "key_id": r.json()["id"],
        "ride_id": ride,
        "delivery_id": delivery,
        "offer_id": offer["offer_id"],
        "token": str(offer["token"]),
        "driver_id": "dX",
        "restaurant_id": restaurant,
        "item_id": item,
        "spare_item": spare_item,
        "spare_restaurant": spare,
        "order_id": food_order,
        "job_id": job,
        "pin": pin,
    }


def request_for(
    world: World, method: str, template: str, who: str, n: int
) -> tuple[str, dict[str, Any] | None]:
    """The concrete path and a valid body of one call: what ADMIN must name (the customer, the
    driver) it names; an account leaves it out."""
    ids = world.ids
    names = who == "admin" or who in BAD_TOKENS
    path = template.format(**ids)
    if (method, template) == ("DELETE", "/v1/restaurants/{restaurant_id}"):
        path = f"/v1/restaurants/{ids['spare_restaurant']}"
    if (method, template) == ("DELETE", "/v1/restaurants/{restaurant_id}/menu/{item_id}"):
        path = f"/v1/restaurants/{ids['restaurant_id']}/menu/{ids['spare_item']}"
    query = {
        "/v1/rides": "?customer_id=cA",
        "/v1/deliveries": "?customer_id=cA",
        "/v1/jobs": "?status=pending",
        "/v1/admin/drivers/nearest": f"?lat={BLR[0]}&lng={BLR[1]}",
    }
    if method == "GET":
        return path + query.get(template, ""), None
    customer = {"cA": "cA", "cB": "cB"}.get(who, "cA")
    bodies: dict[str, Callable[[], dict[str, Any]]] = {
        "/v1/rides": lambda: (
            {"pickup": PICKUP, "dropoff": DROPOFF} | ({"rider_id": customer} if names else {})
        ),
        "/request-ride": lambda: (
            {
                "pickup_lat": PICKUP["lat"],
                "pickup_lng": PICKUP["lng"],
                "dest_lat": DROPOFF["lat"],
                "dest_lng": DROPOFF["lng"],
            }
            | ({"rider_id": customer} if names else {})
        ),
        "/v1/deliveries": lambda: (
            {"pickup": PICKUP, "dropoff": DROPOFF} | ({"customer_id": customer} if names else {})
        ),
        "/v1/food-orders": lambda: (
            {
                "restaurant_id": ids["restaurant_id"],
                "items": [{"item_id": ids["item_id"], "qty": 1}],
                "dropoff": DROPOFF,
            }
            | ({"customer_id": customer} if names else {})
        ),
        "/v1/delivery/assign": lambda: {
            "order_id": f"ORD-{n}",
            "restaurant_id": "RST_441",
            "location": PICKUP,
        },
        "/v1/drivers": lambda: {"id": f"new-{n}", "name": "New"},
        "/v1/drivers/{driver_id}/status": lambda: {"status": "online"},
        "/v1/drivers/{driver_id}/location": lambda: dict(PICKUP),
        "/v1/drivers/locations": lambda: {"positions": [{"driver_id": "dX", **PICKUP}]},
        "/v1/jobs": lambda: {"task": "test_work"},
        "/v1/admin/api-keys": lambda: {"name": f"matrix-{n}", "role": "CUSTOMER"},
        "/submit-job": lambda: {"task": "test_work"},
        "/v1/restaurants": lambda: {"name": "R", "location": PICKUP},
        "/v1/restaurants/{restaurant_id}": lambda: {"name": "Renamed"},
        "/v1/restaurants/{restaurant_id}/menu": lambda: {
            "name": "Dosa",
            "price_minor": 9000,
            "currency": "INR",
        },
        "/v1/restaurants/{restaurant_id}/menu/{item_id}": lambda: {"price_minor": 31000},
    }
    if template in bodies:
        return path, bodies[template]()
    if template.startswith("/v1/offers/"):
        return path, {"token": world.token} | ({"driver_id": "dX"} if names else {})
    if method == "POST" and not template.endswith("/cancel") and "{" in template:
        # A driver step: ADMIN names the driver; the rest act on no body at all, but for the
        # ride's pickup, which takes the trip PIN its customer has.
        if template == "/v1/rides/{ride_id}/picked-up" and not names:
            return path, {"pin": ids["pin"]}
        return path, ({"driver_id": "dX"} if names else None)
    return path, None


def routes_of(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}


async def test_every_route_answers_every_caller_as_the_table_says(
    world: tuple[World, httpx.AsyncClient],
) -> None:
    w, c = world
    document = (await c.get("/openapi.json")).json()
    present = routes_of(document)
    rows = {**TABLE, **ACCOUNT_ROUTES}
    assert not present - rows.keys(), "routes without a row"
    assert not rows.keys() - present, "rows for routes that do not exist"
    wrong = []
    n = 0
    for (method, template), row in rows.items():
        want = expected(row)
        for who in CALL_ORDER:
            n += 1
            cell = want["anon" if who in BAD_TOKENS else who]
            path, body = request_for(w, method, template, who, n)
            r = await c.request(method, path, json=body, headers=w.headers[who])
            if not admits(cell, r.status_code):
                wrong.append(f"{method} {path} as {who}: {r.status_code}, want {cell}: {r.text}")
            elif r.status_code == 401:
                assert r.headers["WWW-Authenticate"].startswith("Bearer"), path
            if r.status_code >= 400:
                assert r.headers["content-type"] == "application/problem+json", (path, who)
                assert "rf:" not in r.text, (path, who, r.text)  # no Redis key names
    assert not wrong, "\n".join(wrong)
    assert n == len(rows) * len(CALL_ORDER) >= 500


async def test_docs_and_health_answer_anyone_and_nothing_else_does(
    world: tuple[World, httpx.AsyncClient],
) -> None:
    _, c = world
    for path in ("/docs", "/openapi.json", "/healthz", "/readyz"):
        assert (await c.get(path)).status_code == 200, path
    document = (await c.get("/openapi.json")).json()
    for (method, path), row in TABLE.items():
        anonymous = expected(row)["anon"]
        operation = document["paths"][path][method.lower()]
        # Guarded in /docs exactly where the table says anonymous callers are refused.
        assert bool(operation.get("security")) == (anonymous == "401"), (method, path)
        if anonymous != "401":
            assert path in ("/healthz", "/readyz"), f"{method} {path} answers anonymous callers"


def test_each_route_declares_its_roles_in_its_signature() -> None:
    """The roles a route admits, read back from the caller it takes, agree with the table: a
    role refused by the route-level check (403 on every path) is not admitted."""
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    declared = {}
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue  # /docs and /openapi.json: FastAPI's own, public
        for method in context.methods or ():
            declared[(method, context.path)] = allowed_roles(context.original_route)
    columns = {Role.CUSTOMER: ("cA", "cB"), Role.DRIVER: ("dX", "dY"), Role.ADMIN: ("admin",)}
    for key, row in TABLE.items():
        roles = declared[key]
        want = expected(row)
        if roles is None:
            assert want["anon"] != "401", key
            continue
        for role, names in columns.items():
            # A role the route does not admit is 403 on every path; an admitted one can still
            # be refused a route for back ends only (the assignment, the batch of positions).
            if role not in roles:
                assert all(want[n] == "403" for n in names), (key, role)


def test_the_readme_table_is_the_routes_own() -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    readme = (Path(__file__).parents[2] / "README.md").read_text("utf-8")
    assert access.table(app) in readme, "regenerate it: python -m rideflow.api.access"
