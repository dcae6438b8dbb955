"""Helpers for the restaurant, menu and food-order tests: the app with its state (to reach its
record and caches), a restaurant with a menu, and a counter of SQL statements."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from rideflow.api.app import create_app
from rideflow.config import Settings
from tests import auth
from tests.conftest import BLR, offset


@contextlib.asynccontextmanager
async def app_with_state(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app over ASGI and what its lifespan handed requests (`state["record"]`, …)."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://rideflow", headers=auth.admin(settings)
        ) as c:
            yield c, manager._state


async def new_restaurant(c: httpx.AsyncClient, name: str = "Meghana Foods", **kw: Any) -> str:
    lat, lng = offset(*BLR, north_m=300)
    body = {"name": name, "address": "Residency Rd", "location": {"lat": lat, "lng": lng}, **kw}
    r = await c.post("/v1/restaurants", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def new_item(c: httpx.AsyncClient, restaurant_id: str, **kw: Any) -> dict[str, Any]:
    body = {"name": "Chicken Biryani", "price_minor": 32000, "currency": "INR", **kw}
    r = await c.post(f"/v1/restaurants/{restaurant_id}/menu", json=body)
    assert r.status_code == 201, r.text
    item: dict[str, Any] = r.json()
    return item


@contextlib.contextmanager
def menu_queries(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SELECT that reads menu items on `engine`, while the block runs."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "menu_items" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
