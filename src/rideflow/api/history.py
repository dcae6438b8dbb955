"""History from the record: pages of rides and deliveries, newest first, read from SQL
(`GET /v1/rides`, `GET /v1/deliveries`). One order's own route falls back to the record by
itself (`rides.py`, `deliveries.py`)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, NamedTuple

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from rideflow.api.deps import RecordDep
from rideflow.api.ownership import acting_as
from rideflow.api.problems import responses
from rideflow.api.security import CustomerCaller
from rideflow.auth.principal import Principal, Role
from rideflow.errors import Forbidden, NotFound, Unprocessable
from rideflow.orders.schemas import DeliveryView, RideView
from rideflow.orders.states import Kind, OrderStatus
from rideflow.orders.store import Orders
from rideflow.record import history
from rideflow.record.db import Record
from rideflow.schemas import ID_PATTERN

router = APIRouter(tags=["history"])

CustomerId = Annotated[
    str | None,
    Query(min_length=1, max_length=64, pattern=ID_PATTERN, description="Only this customer's"),
]
Status = Annotated[OrderStatus | None, Query(description="Only orders now in this status")]
From = Annotated[
    datetime | None,
    Query(alias="from", description="Created at or after (ISO-8601; naive means UTC)"),
]
To = Annotated[datetime | None, Query(description="Created before (ISO-8601; naive means UTC)")]
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=400, description="`next_cursor` of the previous page"),
]
Limit = Annotated[int, Query(ge=1, le=history.MAX_PAGE, description="Orders per page")]


class RidePage(BaseModel):
    rides: list[RideView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def epoch_us(value: datetime, field: str) -> int:
    """Epoch microseconds of a datetime (a naive one is taken as UTC), or a 422 naming `field`
    when it is not between 1970 and 9998."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        within = EARLIEST <= value < LATEST
    except (OverflowError, ValueError):
        within = False
    if not within:
        raise Unprocessable("must be a time between 1970 and 9998", field=field)
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def filters(
    customer_id: str | None, status: str | None, start: datetime | None, end: datetime | None
) -> history.Filters:
    from_us = None if start is None else epoch_us(start, "from")
    to_us = None if end is None else epoch_us(end, "to")
    if from_us is not None and to_us is not None and from_us > to_us:
        raise Unprocessable("`from` is after `to`", field="from")
    return history.Filters(customer_id, status, from_us, to_us)


async def order_or_record(
    orders: Orders, record: Record, order_id: str, kind: Kind
) -> RideView | DeliveryView:
    """The order from Redis; once Redis no longer has it, from the record; 404 when neither
    does (a record that cannot answer is a 503, never a 404)."""
    try:
        return await (orders.ride(order_id) if kind == "ride" else orders.delivery(order_id))
    except NotFound:
        found = await history.order(record, order_id, kind)
        if found is None:
            raise
        return found


LIST_DOC = (
    "From the record (SQL), newest first by creation time; keyset pagination: pass "
    "`next_cursor` as `cursor` for the next page. The record is written by the recorder, so an "
    "order appears here shortly after its events. A CUSTOMER sees only their own orders: "
    "`customer_id` defaults to theirs, and another customer's id is 403."
)


class PageQuery(NamedTuple):
    """A history page's query, as both list routes take it."""

    filters: history.Filters
    limit: int
    cursor: str | None


async def page_query(
    customer_id: CustomerId = None,
    status: Status = None,
    start: From = None,
    to: To = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> PageQuery:
    return PageQuery(filters(customer_id, status, start, to), limit, cursor)


PageQueryDep = Annotated[PageQuery, Depends(page_query)]


def own_page(caller: Principal, q: PageQuery) -> PageQuery:
    """A customer's query narrowed to their own orders. Naming another customer is a 403, not
    an empty page: customer ids are not secrets the way order ids are, and an empty page would
    read as "they have no orders", an answer we would be making up."""
    if not acting_as(caller, Role.CUSTOMER):
        return q
    named = q.filters.customer_id
    if named is not None and named != caller.subject:
        raise Forbidden(f"`customer_id` must be your own id ({caller.subject}) or left out")
    return q._replace(filters=dataclasses.replace(q.filters, customer_id=caller.subject))


@router.get(
    "/v1/rides",
    response_model=RidePage,
    responses=responses(422),
    summary="Ride history, newest first, filtered by customer, status and creation time",
    description=LIST_DOC,
)
async def list_rides(caller: CustomerCaller, record: RecordDep, q: PageQueryDep) -> RidePage:
    q = own_page(caller, q)
    found = await history.page(record, "ride", q.filters, q.limit, q.cursor)
    return RidePage(rides=found.items, next_cursor=found.next_cursor)


@router.get(
    "/v1/deliveries",
    response_model=DeliveryPage,
    responses=responses(422),
    summary="Delivery history, newest first, filtered by customer, status and creation time",
    description=LIST_DOC,
)
async def list_deliveries(
    caller: CustomerCaller, record: RecordDep, q: PageQueryDep
) -> DeliveryPage:
    q = own_page(caller, q)
    found = await history.page(record, "delivery", q.filters, q.limit, q.cursor)
    return DeliveryPage(deliveries=found.items, next_cursor=found.next_cursor)
