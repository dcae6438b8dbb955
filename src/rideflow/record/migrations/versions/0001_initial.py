"""The record: orders, events, offers, drivers, tracks, restaurants, menus, food orders, jobs,
request log; on PostgreSQL, PostGIS points with GiST indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-30 00:16:25.154956
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# PostgreSQL only: a geometry(Point, 4326) computed from each table's lat / lng, GiST-indexed.
POINTS = {
    "drivers": ("geom", "lat", "lng"),
    "driver_tracks": ("geom", "lat", "lng"),
    "restaurants": ("geom", "lat", "lng"),
    "orders": ("pickup_geom", "pickup_lat", "pickup_lng"),
}


def upgrade() -> None:
    op.create_table(
        "driver_tracks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("city", sa.String(length=16), nullable=False),
        sa.Column("driver_id", sa.String(length=64), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lng", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("city", "driver_id", "at_us", name="uq_driver_tracks_sample"),
    )
    with op.batch_alter_table("driver_tracks", schema=None) as batch_op:
        batch_op.create_index("ix_driver_tracks_at", ["at_us"], unique=False)

    op.create_table(
        "drivers",
        sa.Column("city", sa.String(length=16), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("vehicle", sa.String(length=64), nullable=True),
        sa.Column("rating", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lng", sa.Float(), nullable=True),
        sa.Column("seen_us", sa.BigInteger(), nullable=True),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("city", "id"),
    )
    op.create_table(
        "food_orders",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("city", sa.String(length=16), nullable=False),
        sa.Column("restaurant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("dropoff_lat", sa.Float(), nullable=False),
        sa.Column("dropoff_lng", sa.Float(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("food_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_food_orders_created_us"), ["created_us"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_food_orders_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_food_orders_restaurant_id"), ["restaurant_id"], unique=False
        )

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=True),
        sa.Column("started_us", sa.BigInteger(), nullable=True),
        sa.Column("finished_us", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_finished_us"), ["finished_us"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_task"), ["task"], unique=False)

    op.create_table(
        "offers",
        sa.Column("id", sa.String(length=96), nullable=False),
        sa.Column("city", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("driver_id", sa.String(length=64), nullable=False),
        sa.Column("pickup_m", sa.Float(), nullable=True),
        sa.Column("offered_us", sa.BigInteger(), nullable=False),
        sa.Column("answered_us", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_offers_driver_id"), ["driver_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_offers_offered_us"), ["offered_us"], unique=False)
        batch_op.create_index(batch_op.f("ix_offers_order_id"), ["order_id"], unique=False)

    op.create_table(
        "order_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("city", sa.String(length=16), nullable=False),
        sa.Column("entry_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("driver_id", sa.String(length=64), nullable=True),
        sa.Column("offer_id", sa.String(length=96), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("city", "entry_id", name="uq_order_events_entry"),
    )
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_events_at_us"), ["at_us"], unique=False)
        batch_op.create_index(batch_op.f("ix_order_events_order_id"), ["order_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("city", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("driver_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=True),
        sa.Column("pickup_lat", sa.Float(), nullable=True),
        sa.Column("pickup_lng", sa.Float(), nullable=True),
        sa.Column("dropoff_lat", sa.Float(), nullable=True),
        sa.Column("dropoff_lng", sa.Float(), nullable=True),
        sa.Column("restaurant_id", sa.String(length=64), nullable=True),
        sa.Column("ext_order", sa.String(length=128), nullable=True),
        sa.Column("pickup_m", sa.Float(), nullable=True),
        sa.Column("offers", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.Column("queued_us", sa.BigInteger(), nullable=True),
        sa.Column("searching_us", sa.BigInteger(), nullable=True),
        sa.Column("offered_us", sa.BigInteger(), nullable=True),
        sa.Column("accepted_us", sa.BigInteger(), nullable=True),
        sa.Column("arriving_us", sa.BigInteger(), nullable=True),
        sa.Column("picked_up_us", sa.BigInteger(), nullable=True),
        sa.Column("finished_us", sa.BigInteger(), nullable=True),
        sa.Column("cancelled_us", sa.BigInteger(), nullable=True),
        sa.Column("no_driver_us", sa.BigInteger(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_city"), ["city"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_created_us"), ["created_us"], unique=False)
        batch_op.create_index(
            "ix_orders_customer_created", ["customer_id", "created_us"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_orders_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_driver_id"), ["driver_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_status"), ["status"], unique=False)

    op.create_table(
        "request_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.String(length=40), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_us", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=128), nullable=True),
        sa.Column("rate_policy", sa.String(length=32), nullable=True),
        sa.Column("rate_decision", sa.String(length=8), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_id"),
    )
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_request_log_at_us"), ["at_us"], unique=False)

    op.create_table(
        "restaurants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("city", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lng", sa.Float(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("menu_version", sa.Integer(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("restaurants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_restaurants_city"), ["city"], unique=False)

    op.create_table(
        "food_order_lines",
        sa.Column("food_order_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["food_order_id"], ["food_orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("food_order_id", "item_id"),
    )
    op.create_table(
        "menu_items",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("restaurant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("per_customer_limit", sa.Integer(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["restaurant_id"], ["restaurants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("menu_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_menu_items_restaurant_id"), ["restaurant_id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        for table, (column, lat, lng) in POINTS.items():
            point = f"ST_SetSRID(ST_MakePoint({lng}, {lat}), 4326)"
            op.add_column(
                table,
                sa.Column(
                    column,
                    Geometry("POINT", srid=4326, spatial_index=False),
                    sa.Computed(point, persisted=True),
                ),
            )
            op.create_index(f"ix_{table}_{column}", table, [column], postgresql_using="gist")


def downgrade() -> None:
    # The PostGIS columns and indexes go with their tables; the extension stays (not ours alone).
    with op.batch_alter_table("menu_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_menu_items_restaurant_id"))

    op.drop_table("menu_items")
    op.drop_table("food_order_lines")
    with op.batch_alter_table("restaurants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_restaurants_city"))

    op.drop_table("restaurants")
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_log_at_us"))

    op.drop_table("request_log")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_status"))
        batch_op.drop_index(batch_op.f("ix_orders_driver_id"))
        batch_op.drop_index(batch_op.f("ix_orders_customer_id"))
        batch_op.drop_index("ix_orders_customer_created")
        batch_op.drop_index(batch_op.f("ix_orders_created_us"))
        batch_op.drop_index(batch_op.f("ix_orders_city"))

    op.drop_table("orders")
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_events_order_id"))
        batch_op.drop_index(batch_op.f("ix_order_events_at_us"))

    op.drop_table("order_events")
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offers_order_id"))
        batch_op.drop_index(batch_op.f("ix_offers_offered_us"))
        batch_op.drop_index(batch_op.f("ix_offers_driver_id"))

    op.drop_table("offers")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_task"))
        batch_op.drop_index(batch_op.f("ix_jobs_finished_us"))

    op.drop_table("jobs")
    with op.batch_alter_table("food_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_food_orders_restaurant_id"))
        batch_op.drop_index(batch_op.f("ix_food_orders_customer_id"))
        batch_op.drop_index(batch_op.f("ix_food_orders_created_us"))

    op.drop_table("food_orders")
    op.drop_table("drivers")
    with op.batch_alter_table("driver_tracks", schema=None) as batch_op:
        batch_op.drop_index("ix_driver_tracks_at")

    op.drop_table("driver_tracks")
