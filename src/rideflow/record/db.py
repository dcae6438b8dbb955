"""The record's database: its URL, the async engine, sessions and migrations.

SQLite (aiosqlite) is the embedded default, in `<data_dir>/rideflow.db`; PostgreSQL + PostGIS
(asyncpg) when `RIDEFLOW_DATABASE_URL=postgresql+asyncpg://...`. The same models serve both;
PostGIS-only columns (geometry points with GiST indexes) are added by the migrations on PostgreSQL.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from rideflow.config import Settings

if TYPE_CHECKING:
    from alembic.config import Config
# Alembic is imported where migrations run: it costs half a second to import, and processes that
# only read and write the record (the job worker) never migrate.

IMMEDIATE = "rideflow_immediate"
"""Execution option of writing connections (SQLite: `BEGIN IMMEDIATE`)."""
MIGRATION_LOCK = 0x52464D47  # 'RFMG': the advisory lock migrations take on PostgreSQL


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


JSON_CODEC: dict[str, Any] = {"json_serializer": _json_text, "json_deserializer": orjson.loads}
"""JSON columns through orjson: the recorder writes an event's data and an order's bookkeeping
for every event, and the standard library's encoder was a tenth of its time."""


def database_url(settings: Settings) -> str:
    """The record's URL: the configured one, or SQLite under the data directory."""
    if settings.database_url:
        return settings.database_url
    path = Path(settings.data_dir).resolve() / "rideflow.db"
    return f"sqlite+aiosqlite:///{path}"


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine. SQLite gets WAL, a busy timeout, foreign keys and real transactions
    (pysqlite's own transaction handling would commit DDL as it goes, so a failed migration
    would leave half its tables behind)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30}, **JSON_CODEC)
        _sqlite_transactions(engine)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        **JSON_CODEC,
    )


def _sqlite_transactions(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock at once (waiting up to the busy timeout): a deferred
        # transaction that read first could not take it later once another writer committed.
        # Readers begin deferred and never wait for a writer (WAL).
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(url: str) -> Config:
    """Alembic's configuration, built in code: no alembic.ini to find."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("rideflow.record") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def _run(url: str, fn: Any, *args: Any) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            cfg = alembic_config(url)

            def go(sync_conn: Connection) -> None:
                if sync_conn.dialect.name == "postgresql":
                    # Processes starting together migrate one after the other.
                    sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                cfg.attributes["connection"] = sync_conn
                fn(cfg, *args)

            await conn.run_sync(go)
    finally:
        await engine.dispose()


HEAD = "0003"
"""The newest migration (a test checks that it is Alembic's head): a database already there is
recognised with one query, without importing Alembic and reading its scripts (a second of a
process's start)."""

_AT_HEAD: set[str] = set()
"""Databases this process has migrated to head: every app start asks again, once is enough."""


async def _at_head(url: str) -> bool:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            versions = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
            return [v for (v,) in versions] == [HEAD]
    except DBAPIError:  # not migrated yet (or unreachable: the upgrade then says so)
        return False
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate to `revision`, all in one transaction: a failing migration leaves the database
    as it was."""
    if revision == "head" and (url in _AT_HEAD or await _at_head(url)):
        _AT_HEAD.add(url)
        return
    from alembic import command

    await _run(url, command.upgrade, revision)
    if revision == "head":
        _AT_HEAD.add(url)


async def downgrade(url: str, revision: str) -> None:
    _AT_HEAD.discard(url)
    from alembic import command

    await _run(url, command.downgrade, revision)


async def current(url: str) -> str | None:
    """The revision the database is at (None: not migrated)."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
    finally:
        await engine.dispose()


class Record:
    """One process's handle on the record: its URL, engine and sessions (made on first use, so
    a process starts while the database is down; calls then fail with `DatabaseUnavailable`)."""

    def __init__(self, settings: Settings) -> None:
        self.url = database_url(settings)
        self.postgres = is_postgres(self.url)
        self.echo = settings.database_echo
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._readers: async_sessionmaker[AsyncSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_engine(self.url, echo=self.echo)
        return self._engine

    @property
    def writer(self) -> AsyncEngine:
        """The engine for transactions that write (on SQLite they take the write lock first)."""
        return self.engine.execution_options(**{IMMEDIATE: True})

    def session(self, *, read_only: bool = False) -> AsyncSession:
        """A new session (use as `async with record.session() as s, s.begin(): ...`); one
        that only reads says so, and on SQLite then never waits for a writer."""
        if self._sessions is None or self._readers is None:
            self._sessions = async_sessionmaker(self.writer, expire_on_commit=False)
            self._readers = async_sessionmaker(self.engine, expire_on_commit=False)
        return self._readers() if read_only else self._sessions()

    async def migrate(self) -> None:
        await upgrade(self.url)

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine, self._sessions, self._readers = None, None, None


def database_outage(exc: BaseException) -> bool:
    """Whether an error means the database cannot serve now (a retry may succeed)."""
    return isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
