"""Migrations on both databases: empty -> head -> empty, the PostGIS columns on PostgreSQL, and a
failing migration that leaves the database as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from rideflow.record import db
from rideflow.record.db import HEAD
from rideflow.record.models import Base
from tests.record import record_database

TABLES = set(Base.metadata.tables)
POSTGIS_ONLY = {("orders", "pickup_geom"), ("drivers", "geom"), ("driver_tracks", "geom")}
POSTGIS_ONLY |= {("restaurants", "geom")}


async def tables(url: str) -> set[str]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return names - {"alembic_version", "spatial_ref_sys"}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_upgrade_from_empty_to_head_and_back_down(kind: str, tmp_path: Path) -> None:
    async with record_database(kind, tmp_path, migrate=False) as url:
        assert await db.current(url) is None
        await db.upgrade(url)
        assert await db.current(url) == HEAD
        assert await tables(url) == TABLES
        await db.upgrade(url)  # at head already: nothing to do
        await db.downgrade(url, "base")
        assert await db.current(url) is None
        assert await tables(url) == set()
        await db.upgrade(url)
        assert await tables(url) == TABLES


async def test_postgis_points_are_computed_and_gist_indexed(tmp_path: Path) -> None:
    async with record_database("postgresql", tmp_path) as url:
        engine = db.create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO drivers (city, id, lat, lng, updated_us) "
                        "VALUES ('blr', 'd1', 12.97, 77.59, 0)"
                    )
                )
                wkt = await conn.scalar(text("SELECT ST_AsText(geom) FROM drivers"))
                srid = await conn.scalar(text("SELECT ST_SRID(geom) FROM drivers"))
                indexes = await conn.scalars(
                    text("SELECT indexdef FROM pg_indexes WHERE tablename = 'driver_tracks'")
                )
                gist = [i for i in indexes if "gist" in i.lower()]
        finally:
            await engine.dispose()
    assert wkt == "POINT(77.59 12.97)" and srid == 4326
    assert gist and "geom" in gist[0]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_failing_migration_leaves_the_database_as_it_was(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic.operations import Operations

    real = Operations.create_table
    made: list[str] = []

    def create_table(self: Operations, name: str, *cols: object, **kw: object) -> object:
        if len(made) == 3:
            raise RuntimeError("the disk is full (on purpose)")
        made.append(name)
        return real(self, name, *cols, **kw)

    monkeypatch.setattr(Operations, "create_table", create_table)
    async with record_database(kind, tmp_path, migrate=False) as url:
        with pytest.raises(RuntimeError, match="on purpose"):
            await db.upgrade(url)
        assert len(made) == 3  # three tables were made before it failed ...
        monkeypatch.setattr(Operations, "create_table", real)
        assert await tables(url) == set()  # ... and none is left
        assert await db.current(url) is None


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_migrations_make_what_the_models_declare(kind: str, tmp_path: Path) -> None:
    """Alembic's comparison of the migrated database with the models finds nothing to change
    (on PostgreSQL, but for the PostGIS points and their indexes, which only it has)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def differences(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    def postgis_only(diff: Any) -> bool:
        kind, *rest = diff if isinstance(diff, tuple) else diff[0]
        if kind == "remove_column":
            return (rest[1], rest[2].name) in POSTGIS_ONLY
        if kind == "remove_index":
            return any((rest[0].table.name, c.name) in POSTGIS_ONLY for c in rest[0].columns)
        return kind == "remove_table" and rest[0].name == "spatial_ref_sys"

    async with record_database(kind, tmp_path) as url:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                found = await conn.run_sync(differences)
        finally:
            await engine.dispose()
    assert [d for d in found if not postgis_only(d)] == []


def test_the_head_the_record_knows_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(db.alembic_config("sqlite://")).get_heads() == [HEAD]
