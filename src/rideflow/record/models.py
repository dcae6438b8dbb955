"""The record's tables: one set of models for SQLite and PostgreSQL.

Times are epoch microseconds (`*_us`, BIGINT) as Redis stamps them, so durations are plain
subtraction on both databases; the API shows them as UTC ISO-8601. Points are `lat` / `lng`
columns on both; on PostgreSQL the migrations add a `geom geometry(Point, 4326)` column computed
from them, with a GiST index, for PostGIS queries (`ORDER BY geom <-> point`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Micros = BigInteger


class Base(DeclarativeBase):
    pass


class Order(Base):
    """A ride or a delivery, projected from its events: the time of every status, who drove it,
    how far the driver was, how many offers it took, how it ended."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    city: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # ride | delivery
    # customer_id is indexed by ix_orders_customer_created; status is not indexed, so that
    # the recorder's update of an order's status leaves its indexes alone (see migration 0002).
    customer_id: Mapped[str | None] = mapped_column(String(64))
    driver_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(24))
    strategy: Mapped[str | None] = mapped_column(String(16))
    pickup_lat: Mapped[float | None] = mapped_column(Float)
    pickup_lng: Mapped[float | None] = mapped_column(Float)
    dropoff_lat: Mapped[float | None] = mapped_column(Float)
    dropoff_lng: Mapped[float | None] = mapped_column(Float)
    restaurant_id: Mapped[str | None] = mapped_column(String(64))
    ext_order: Mapped[str | None] = mapped_column(String(128))
    pickup_m: Mapped[float | None] = mapped_column(Float)
    offers: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str | None] = mapped_column(String(24))  # the final status
    reason: Mapped[str | None] = mapped_column(Text)
    created_us: Mapped[int] = mapped_column(Micros, index=True)
    updated_us: Mapped[int] = mapped_column(Micros)
    queued_us: Mapped[int | None] = mapped_column(Micros)
    searching_us: Mapped[int | None] = mapped_column(Micros)
    offered_us: Mapped[int | None] = mapped_column(Micros)  # the first offer
    accepted_us: Mapped[int | None] = mapped_column(Micros)
    arriving_us: Mapped[int | None] = mapped_column(Micros)
    picked_up_us: Mapped[int | None] = mapped_column(Micros)
    finished_us: Mapped[int | None] = mapped_column(Micros)  # COMPLETED or DELIVERED
    cancelled_us: Mapped[int | None] = mapped_column(Micros)
    no_driver_us: Mapped[int | None] = mapped_column(Micros)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_orders_customer_created", "customer_id", "created_us"),)


class OrderEvent(Base):
    """Every transition, as the city's event stream carried it; (city, entry) is unique, so a
    replayed batch inserts nothing twice."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    city: Mapped[str] = mapped_column(String(16))
    entry_id: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(24))
    at_us: Mapped[int] = mapped_column(Micros, index=True)
    driver_id: Mapped[str | None] = mapped_column(String(64))
    offer_id: Mapped[str | None] = mapped_column(String(96))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (UniqueConstraint("city", "entry_id", name="uq_order_events_entry"),)


class Offer(Base):
    """An offer made to a driver, with its outcome and when it was answered."""

    __tablename__ = "offers"

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    city: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    driver_id: Mapped[str] = mapped_column(String(64), index=True)
    pickup_m: Mapped[float | None] = mapped_column(Float)
    offered_us: Mapped[int] = mapped_column(Micros, index=True)
    answered_us: Mapped[int | None] = mapped_column(Micros)
    # accepted | rejected | lapsed | withdrawn; None while pending
    outcome: Mapped[str | None] = mapped_column(String(16))


class Driver(Base):
    """A driver's profile and last recorded position."""

    __tablename__ = "drivers"

    city: Mapped[str] = mapped_column(String(16), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(128))
    vehicle: Mapped[str | None] = mapped_column(String(64))
    rating: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str | None] = mapped_column(String(16))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    seen_us: Mapped[int | None] = mapped_column(Micros)
    updated_us: Mapped[int] = mapped_column(Micros)


class DriverTrack(Base):
    """Sampled positions: one row per driver per `track_sample_s`."""

    __tablename__ = "driver_tracks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    city: Mapped[str] = mapped_column(String(16))
    driver_id: Mapped[str] = mapped_column(String(64))
    at_us: Mapped[int] = mapped_column(Micros)
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("city", "driver_id", "at_us", name="uq_driver_tracks_sample"),
        Index("ix_driver_tracks_at", "at_us"),
    )


class Restaurant(Base):
    __tablename__ = "restaurants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    city: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    open: Mapped[bool] = mapped_column(Boolean, default=True)
    menu_version: Mapped[int] = mapped_column(Integer, default=1)
    created_us: Mapped[int] = mapped_column(Micros)
    updated_us: Mapped[int] = mapped_column(Micros)


class MenuItem(Base):
    """A dish; `stock` and `per_customer_limit` make it a limited item (sold through Redis)."""

    __tablename__ = "menu_items"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    restaurant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("restaurants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    stock: Mapped[int | None] = mapped_column(Integer)
    per_customer_limit: Mapped[int | None] = mapped_column(Integer)
    created_us: Mapped[int] = mapped_column(Micros)
    updated_us: Mapped[int] = mapped_column(Micros)


class FoodOrder(Base):
    """A food order; its delivery is the order with the same id."""

    __tablename__ = "food_orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    city: Mapped[str] = mapped_column(String(16))
    restaurant_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(24))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    dropoff_lat: Mapped[float] = mapped_column(Float)
    dropoff_lng: Mapped[float] = mapped_column(Float)
    created_us: Mapped[int] = mapped_column(Micros, index=True)
    updated_us: Mapped[int] = mapped_column(Micros)


class FoodOrderLine(Base):
    __tablename__ = "food_order_lines"

    food_order_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("food_orders.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    qty: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)


class JobRecord(Base):
    """A finished background job."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    created_us: Mapped[int | None] = mapped_column(Micros)
    started_us: Mapped[int | None] = mapped_column(Micros)
    finished_us: Mapped[int] = mapped_column(Micros, index=True)
    payload: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class RequestLog(Base):
    """One API request: route template, method, status, latency, client, rate-limit decision."""

    __tablename__ = "request_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(40), unique=True)
    at_us: Mapped[int] = mapped_column(Micros, index=True)
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(200))
    status: Mapped[int] = mapped_column(Integer)
    latency_us: Mapped[int] = mapped_column(Integer)
    client: Mapped[str | None] = mapped_column(String(128))
    rate_policy: Mapped[str | None] = mapped_column(String(32))
    rate_decision: Mapped[str | None] = mapped_column(String(8))  # allow | deny | None: none


class Account(Base):
    """A person who logs in: a CUSTOMER or a DRIVER (who is that driver: the driver's profile has
    the account's id), or an ADMIN. `email` is kept as given; `email_key`, its lower-cased form,
    is what is unique (a unique index on the column itself is case-sensitive on PostgreSQL)."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(120))
    created_us: Mapped[int] = mapped_column(Micros)
    updated_us: Mapped[int] = mapped_column(Micros)

    __table_args__ = (UniqueConstraint("email_key", name="uq_accounts_email_key"),)


class ApiKey(Base):
    """A back end's key: only its SHA-256 is kept (the key is shown once, at creation), with a
    short prefix that names it in listings."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(48))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_us: Mapped[int] = mapped_column(Micros)
    revoked_us: Mapped[int | None] = mapped_column(Micros)

    __table_args__ = (UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),)
