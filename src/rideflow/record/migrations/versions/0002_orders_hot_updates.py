"""Orders take their status updates in place: drop the index on `status` (no query needs it:
lists go by customer or by time and filter the status) and the one on `customer_id` (the
leading column of `ix_orders_customer_created`), and on PostgreSQL leave a fifth of each page
free. An event that changes no indexed column then updates the row where it is (a HOT update)
instead of adding an entry to each of the table's indexes, GiST included.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 80


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_index("ix_orders_status")
        batch.drop_index("ix_orders_customer_id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE orders SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE orders RESET (fillfactor)")
    with op.batch_alter_table("orders") as batch:
        batch.create_index("ix_orders_customer_id", ["customer_id"])
        batch.create_index("ix_orders_status", ["status"])
