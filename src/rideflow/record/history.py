"""Orders read back from the record: one ride or delivery once Redis' copy has expired, and
pages of history, newest first, by keyset on (created_us, id).

The views are the same models `GET /v1/rides/{id}` builds from Redis (`RideView`,
`DeliveryView`), built from the `orders` row, the driver's recorded profile and, while OFFERED,
the pending offer. What the row cannot say as Redis does: `transitions` holds the first offer's
time for OFFERED (Redis keeps the last one), and `attempts` comes from the row's `extra` (0 when
the recorder did not keep it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Select, and_, or_, select

from rideflow.errors import Unprocessable
from rideflow.orders.schemas import DeliveryView, DriverBrief, RideView
from rideflow.orders.states import Kind
from rideflow.record.db import Record
from rideflow.record.models import Driver, Offer, Order
from rideflow.record.reads import reading
from rideflow.redis.clock import from_us
from rideflow.schemas import Point

TRANSITIONS = (
    ("QUEUED", "queued_us"),
    ("SEARCHING", "searching_us"),
    ("OFFERED", "offered_us"),
    ("ACCEPTED", "accepted_us"),
    ("DRIVER_ARRIVING", "arriving_us"),
    ("PICKED_UP", "picked_up_us"),
    ("CANCELLED", "cancelled_us"),
    ("NO_DRIVER_FOUND", "no_driver_us"),
)
"""Status -> the row's column holding when the order entered it (the last step, COMPLETED or
DELIVERED by kind, is `finished_us`)."""
FINISHED = {"ride": "COMPLETED", "delivery": "DELIVERED"}
CURSOR_VERSION = 1
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Page:
    items: list[RideView] | list[DeliveryView]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Filters:
    """What a page of history is narrowed to; times are epoch microseconds, `to_us` excluded."""

    customer_id: str | None = None
    status: str | None = None
    from_us: int | None = None
    to_us: int | None = None


def encode_cursor(created_us: int, order_id: str) -> str:
    """The opaque cursor after the row (created_us, id)."""
    raw = orjson.dumps([CURSOR_VERSION, created_us, order_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(created_us, id) from a cursor this module made, or a 422 naming `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, created_us, order_id = orjson.loads(raw)
        valid = (
            version == CURSOR_VERSION
            and isinstance(created_us, int)
            and isinstance(order_id, str)
            and 0 <= created_us < 2**63
        )
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        valid = False
    if not valid:
        raise Unprocessable(
            "not a cursor this API returned: pass the previous page's `next_cursor` as it is",
            field="cursor",
        )
    return created_us, order_id


def _view_fields(row: Order, driver: Driver | None, offer_id: str | None) -> dict[str, Any]:
    brief = None
    if row.driver_id:
        brief = DriverBrief(
            id=row.driver_id,
            name=(driver.name if driver else None) or "",
            rating=(driver.rating if driver else None) or 0.0,
            vehicle=(driver.vehicle if driver else None) or "",
        )
    transitions = {
        status: from_us(value)
        for status, column in TRANSITIONS
        if (value := getattr(row, column)) is not None
    }
    if row.finished_us is not None:
        transitions[FINISHED.get(row.kind, "COMPLETED")] = from_us(row.finished_us)
    pickup = Point(lat=row.pickup_lat or 0.0, lng=row.pickup_lng or 0.0)
    dropoff = None
    if row.dropoff_lat is not None and row.dropoff_lng is not None:
        dropoff = Point(lat=row.dropoff_lat, lng=row.dropoff_lng)
    extra = row.extra or {}
    return {
        "city": row.city,
        "status": row.status,
        "strategy": row.strategy or "nearest",
        "pickup": pickup,
        "dropoff": dropoff,
        "driver": brief,
        "offer_id": offer_id if row.status == "OFFERED" else None,
        "pickup_distance_m": row.pickup_m,
        "attempts": int(extra.get("attempts", 0)),
        "offers": row.offers or 0,
        "reason": row.reason,
        "created_at": from_us(row.queued_us or row.created_us),
        "transitions": transitions,
    }


def view(row: Order, driver: Driver | None, offer_id: str | None = None) -> RideView | DeliveryView:
    """The API's view of an order row (a RideView or a DeliveryView by its kind)."""
    fields = _view_fields(row, driver, offer_id)
    if row.kind == "ride":
        return RideView.model_validate(
            {**fields, "ride_id": row.id, "rider_id": row.customer_id or ""}
        )
    return DeliveryView.model_validate(
        {
            **fields,
            "delivery_id": row.id,
            "customer_id": row.customer_id or "",
            "order_id": row.ext_order,
            "restaurant_id": row.restaurant_id,
        }
    )


def _with_driver(query: Select[Any]) -> Select[Any]:
    return query.outerjoin(
        Driver, and_(Driver.city == Order.city, Driver.id == Order.driver_id)
    ).add_columns(Driver)


async def _pending_offers(session: Any, order_ids: Sequence[str]) -> dict[str, str]:
    """The unanswered offer of each order (the latest, should there be several)."""
    if not order_ids:
        return {}
    rows = await session.execute(
        select(Offer.order_id, Offer.id)
        .where(Offer.order_id.in_(order_ids), Offer.outcome.is_(None))
        .order_by(Offer.offered_us)
    )
    return {order_id: offer_id for order_id, offer_id in rows}


async def order(record: Record, order_id: str, kind: Kind) -> RideView | DeliveryView | None:
    """One order of `kind` as the record has it, or None."""
    async with reading(record) as session:
        found = (
            await session.execute(
                _with_driver(select(Order)).where(Order.id == order_id, Order.kind == kind)
            )
        ).first()
        if found is None:
            return None
        row, driver = found
        offers = await _pending_offers(session, [row.id]) if row.status == "OFFERED" else {}
    return view(row, driver, offers.get(row.id))


async def page(
    record: Record, kind: Kind, filters: Filters, limit: int, cursor: str | None = None
) -> Page:
    """Up to `limit` orders of `kind`, newest first (by created time, then id), after `cursor`."""
    query = _with_driver(select(Order)).where(Order.kind == kind)
    if filters.customer_id is not None:
        query = query.where(Order.customer_id == filters.customer_id)
    if filters.status is not None:
        query = query.where(Order.status == filters.status)
    if filters.from_us is not None:
        query = query.where(Order.created_us >= filters.from_us)
    if filters.to_us is not None:
        query = query.where(Order.created_us < filters.to_us)
    if cursor is not None:
        created_us, last_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Order.created_us < created_us,
                and_(Order.created_us == created_us, Order.id < last_id),
            )
        )
    query = query.order_by(Order.created_us.desc(), Order.id.desc()).limit(limit + 1)
    async with reading(record) as session:
        found = (await session.execute(query)).all()
        more = len(found) > limit
        found = found[:limit]
        offered = [row.id for row, _ in found if row.status == "OFFERED"]
        offers = await _pending_offers(session, offered)
    items = [view(row, driver, offers.get(row.id)) for row, driver in found]
    next_cursor = None
    if more and found:
        last = found[-1][0]
        next_cursor = encode_cursor(last.created_us, last.id)
    return Page(items=items, next_cursor=next_cursor)  # type: ignore[arg-type]
