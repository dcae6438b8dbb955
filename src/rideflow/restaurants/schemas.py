"""Request and response bodies of restaurants, menus and food orders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rideflow.orders.states import OrderStatus
from rideflow.schemas import Body, Id, Point

Name = Annotated[str, Field(min_length=1, max_length=200)]
Address = Annotated[str, Field(max_length=500)]
Description = Annotated[str, Field(max_length=2_000)]
Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, three capital letters")
]
PriceMinor = Annotated[
    int, Field(gt=0, le=10**12, description="Price in the currency's minor unit (paise, cents)")
]
Stock = Annotated[int, Field(ge=0, le=10**9, description="Units for sale; absent: unlimited")]
PerCustomer = Annotated[int, Field(ge=1, le=10**6, description="Most units one customer may buy")]


class RestaurantCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Meghana Foods",
                    "address": "Residency Rd, Bengaluru",
                    "location": {"lat": 12.9716, "lng": 77.5946},
                }
            ]
        },
    )

    name: Name
    address: Address | None = None
    location: Point
    open: bool = True


class RestaurantPatch(Body):
    name: Name | None = None
    address: Address | None = None
    location: Point | None = None
    open: bool | None = None


class RestaurantView(BaseModel):
    id: str
    city: str
    name: str
    address: str | None
    location: Point
    open: bool
    created_at: datetime
    updated_at: datetime


class RestaurantPage(BaseModel):
    restaurants: list[RestaurantView]
    next_after: str | None = Field(
        default=None, description="Pass as `after` for the next page; absent on the last"
    )


class MenuItemCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Chicken Biryani",
                    "description": "Andhra style",
                    "price_minor": 32000,
                    "currency": "INR",
                    "stock": 1000,
                    "per_customer_limit": 1,
                }
            ]
        },
    )

    name: Name
    description: Description | None = None
    price_minor: PriceMinor
    currency: Currency
    available: bool = True
    stock: Stock | None = None
    per_customer_limit: PerCustomer | None = None


class MenuItemPatch(Body):
    """Fields to change; `stock` or `per_customer_limit` set to null make the item unlimited."""

    name: Name | None = None
    description: Description | None = None
    price_minor: PriceMinor | None = None
    currency: Currency | None = None
    available: bool | None = None
    stock: Stock | None = None
    per_customer_limit: PerCustomer | None = None

    @model_validator(mode="after")
    def _not_null(self) -> MenuItemPatch:
        for name in ("name", "price_minor", "currency", "available"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class MenuItemView(BaseModel):
    id: str
    name: str
    description: str | None
    price_minor: int
    currency: str
    available: bool
    stock: int | None = Field(description="Configured stock (the live count is Redis')")
    per_customer_limit: int | None


class MenuView(BaseModel):
    restaurant_id: str
    city: str
    name: str
    location: Point
    open: bool
    items: list[MenuItemView]


class LineCreate(Body):
    item_id: Id
    qty: int = Field(ge=1, le=100)


class FoodOrderCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "restaurant_id": "blr-3f2a…",
                    "customer_id": "cust-1",
                    "items": [{"item_id": "itm-…", "qty": 1}],
                    "dropoff": {"lat": 12.98, "lng": 77.60},
                }
            ]
        },
    )

    restaurant_id: Id
    customer_id: Id | None = Field(
        default=None, description="The customer: a CUSTOMER's own id, or left out; ADMIN names one"
    )
    items: list[LineCreate] = Field(min_length=1, max_length=50)
    dropoff: Point


class Line(BaseModel):
    item_id: str
    name: str
    qty: int
    unit_price_minor: int
    line_total_minor: int


class FoodOrderAccepted(BaseModel):
    order_id: str = Field(description="The food order's id, also its delivery's")
    status: OrderStatus = "QUEUED"
    city: str
    restaurant_id: str
    lines: list[Line]
    total_minor: int
    currency: str


class FoodOrderView(BaseModel):
    order_id: str
    city: str
    restaurant_id: str
    customer_id: str
    status: str = Field(description="The delivery's status")
    driver_id: str | None = None
    lines: list[Line]
    total_minor: int
    currency: str
    dropoff: Point
    created_at: datetime
    stock_released: bool = Field(
        description="Reserved limited stock went back (cancelled or no driver)"
    )
