"""Deliveries: queued like rides (`POST /v1/deliveries`), or assigned within the request by the
delivery-assignment contract (`POST /v1/delivery/assign`)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import ValidationError

from rideflow.api.deps import (
    IDEMPOTENCY_DOC,
    AssignerDep,
    OrdersDep,
    PinsDep,
    RecordDep,
    idempotency_key,
)
from rideflow.api.history import order_or_record
from rideflow.api.jsonc import strip_comments
from rideflow.api.ownership import check_order, customer_for, with_pin
from rideflow.api.params import EventAfter
from rideflow.api.problems import responses
from rideflow.api.security import AnyCaller, CustomerCaller, MerchantCaller
from rideflow.api.steps import OrderId, add_steps
from rideflow.dispatch.schemas import AssignRequest, AssignResponse
from rideflow.orders.schemas import DeliveryAccepted, DeliveryCreate, DeliveryEvents, DeliveryView
from rideflow.orders.store import Orders

router = APIRouter(tags=["deliveries"])
_schema = AssignRequest.model_json_schema(ref_template="#/components/schemas/{model}")
ASSIGN_SCHEMA = {
    k: v for k, v in _schema.get("$defs", {}).get("AssignRequest", _schema).items() if k != "$defs"
}


@router.post(
    "/v1/deliveries",
    status_code=202,
    response_model=DeliveryAccepted,
    responses=responses(409, 422),
    summary="Place a delivery: queued for dispatch, answered at once",
    description="A CUSTOMER places it for themself (`customer_id` left out, or their own id); "
    "ADMIN and back ends with an API key name the customer.",
    openapi_extra=IDEMPOTENCY_DOC,
)
async def create_delivery(
    body: DeliveryCreate, caller: CustomerCaller, orders: OrdersDep, request: Request
) -> DeliveryAccepted:
    customer = customer_for(caller, body.customer_id, "customer_id")
    if body.customer_id != customer:
        body = body.model_copy(update={"customer_id": customer})
    delivery_id, city = await orders.create_delivery(body, idempotency_key(request))
    return DeliveryAccepted(delivery_id=delivery_id, city=city)


@router.get(
    "/v1/deliveries/{delivery_id}",
    response_model=DeliveryView,
    responses=responses(404),
    summary="A delivery: status, driver, time of each transition",
    description="From Redis while it holds the delivery; after that, from the record (SQL). "
    "A customer reads their own deliveries, a driver the one they are offered or carry; any "
    "other is 404.",
)
async def get_delivery(
    delivery_id: OrderId, caller: AnyCaller, orders: OrdersDep, record: RecordDep, pins: PinsDep
) -> DeliveryView:
    delivery = await order_or_record(orders, record, delivery_id, "delivery")
    check_order(caller, delivery, "delivery", delivery_id)
    await with_pin(caller, delivery, delivery_id, pins)
    return delivery  # type: ignore[return-value]


@router.get(
    "/v1/deliveries/{delivery_id}/events",
    response_model=DeliveryEvents,
    responses=responses(404, 422),
    summary="A delivery's transitions in order; `after` resumes from a known event id",
)
async def get_delivery_events(
    delivery_id: OrderId,
    caller: AnyCaller,
    orders: OrdersDep,
    record: RecordDep,
    after: EventAfter = None,
) -> DeliveryEvents:
    delivery = await order_or_record(orders, record, delivery_id, "delivery")
    check_order(caller, delivery, "delivery", delivery_id)
    events = await orders.events(delivery_id, "delivery", after)
    return DeliveryEvents(delivery_id=delivery_id, events=events)


steps = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])
add_steps(steps, "delivery", Orders.delivery, DeliveryView)
router.include_router(steps)


@router.post(
    "/v1/delivery/assign",
    response_model=AssignResponse,
    responses=responses(404, 409, 422),
    summary="Assign a driver to a delivery now: the best driver within the radius is reserved "
    "and offered the order",
    description="Answers as soon as a driver is reserved and offered the order (`status` "
    "OFFERED until they accept). No available driver within `radius_km`: 404. The same "
    "`order_id` again returns the same delivery; once a driver has accepted it, 409. The body "
    "may carry `//` comments, as the contract's own example does. For ADMIN and for a "
    "merchant's back end (an API key with role CUSTOMER).",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ASSIGN_SCHEMA}},
        }
    },
)
async def assign_delivery(
    request: Request, caller: MerchantCaller, assigner: AssignerDep
) -> AssignResponse:
    started = time.perf_counter()
    raw = await request.body()
    try:
        body = AssignRequest.model_validate_json(raw)
    except ValidationError as exc:
        if b"/" not in raw or not any(e["type"] == "json_invalid" for e in exc.errors()):
            raise
        body = AssignRequest.model_validate_json(strip_comments(raw.decode("utf-8", "replace")))
    return await assigner.assign(body, started)
