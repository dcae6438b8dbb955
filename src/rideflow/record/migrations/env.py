"""Alembic's environment: run on the connection `rideflow.record.db` passes in (inside its
transaction), or, from the `alembic` command line, on the URL of the configuration."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from rideflow.record.models import Base


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:  # offline tools (autogenerate): a sync URL
    url = context.config.get_main_option("sqlalchemy.url") or ""
    engine = create_engine(url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg"))
    with engine.begin() as conn:
        run(conn)
