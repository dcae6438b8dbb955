"""Rows written straight into the record, as the recorder would: the contract between the
recorder and the reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from rideflow.record import db
from rideflow.record.models import Base, Driver, Offer, Order, RequestLog


def order_row(order_id: str, created_us: int, **values: Any) -> dict[str, Any]:
    """An `orders` row with the columns every order has; `values` override or add."""
    row: dict[str, Any] = {
        "id": order_id,
        "city": "blr",
        "kind": "ride",
        "customer_id": "rider-1",
        "driver_id": None,
        "status": "QUEUED",
        "strategy": "nearest",
        "pickup_lat": 12.9716,
        "pickup_lng": 77.5946,
        "dropoff_lat": 13.01,
        "dropoff_lng": 77.6,
        "pickup_m": None,
        "offers": 0,
        "outcome": None,
        "reason": None,
        "created_us": created_us,
        "updated_us": created_us,
        "queued_us": created_us,
        "offered_us": None,
        "accepted_us": None,
        "finished_us": None,
        "cancelled_us": None,
        "no_driver_us": None,
        "searching_us": None,
        "arriving_us": None,
        "picked_up_us": None,
        "restaurant_id": None,
        "ext_order": None,
        "extra": None,
    }
    row.update(values)
    return row


def driver_row(
    driver_id: str, lat: float | None, lng: float | None, **values: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "city": "blr",
        "id": driver_id,
        "name": f"Driver {driver_id}",
        "vehicle": "Bike",
        "rating": 4.5,
        "status": "online",
        "lat": lat,
        "lng": lng,
        "seen_us": 1_700_000_000_000_000,
        "updated_us": 1_700_000_000_000_000,
    }
    row.update(values)
    return row


async def insert_rows(url: str, model: type[Base], rows: list[dict[str, Any]]) -> None:
    engine: AsyncEngine = db.create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(model), rows)
    finally:
        await engine.dispose()


__all__ = ["Driver", "Offer", "Order", "RequestLog", "driver_row", "insert_rows", "order_row"]
