"""The `rideflow` command."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
import uvloop

from rideflow import logs
from rideflow.config import Settings
from rideflow.process import freeze_startup_objects, stop_on_signals

cli = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="RideFlow: real-time dispatch for ride-hailing and delivery.",
)


def chosen_cities(settings: Settings, city: list[str] | None) -> list[str]:
    """The cities a process serves: those named (each must be configured), else all."""
    known = [c.code for c in settings.cities]
    unknown = set(city or []) - set(known)
    if unknown:
        raise typer.BadParameter(f"unknown cities {sorted(unknown)}; known: {known}")
    return city or known


@cli.command()
def api(
    host: Annotated[str | None, typer.Option(help="Interface to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind")] = None,
) -> None:
    """Serve the HTTP API (needs a Redis: RIDEFLOW_REDIS_URL)."""
    import uvicorn

    settings = Settings()
    logs.configure(settings.log_level)
    uvicorn.run(
        "rideflow.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        access_log=False,
        # Client addresses are RideFlow's to derive, from its own trusted-proxy list: uvicorn
        # would otherwise believe X-Forwarded-For from any local peer.
        proxy_headers=False,
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )


@cli.command()
def dispatcher(
    concurrency: Annotated[int | None, typer.Option(help="Rides handled at once")] = None,
    city: Annotated[
        list[str] | None, typer.Option(help="City to serve (repeat); all when absent")
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit when there is nothing left to do")] = False,
) -> None:
    """Match queued rides to drivers until SIGTERM or Ctrl-C."""
    from rideflow.workers.dispatcher import DispatcherWorker

    settings = Settings()
    logs.configure(settings.log_level)
    cities = chosen_cities(settings, city)

    async def main() -> None:
        stop = stop_on_signals()
        worker = DispatcherWorker(
            settings, cities, concurrency or settings.dispatcher_concurrency, burst=burst
        )
        freeze_startup_objects()
        await worker.run(stop)

    uvloop.run(main())


@cli.command()
def jobs(
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once")] = None,
    burst: Annotated[bool, typer.Option(help="Exit when there is nothing left to do")] = False,
) -> None:
    """Run background jobs until SIGTERM or Ctrl-C: running jobs get `RIDEFLOW_JOB_GRACE_S` to
    finish, the rest are left for other workers."""
    from rideflow.workers.jobs import JobWorker

    settings = Settings()
    logs.configure(settings.log_level)

    async def main() -> None:
        stop = stop_on_signals()
        worker = JobWorker(settings, concurrency, burst=burst)
        freeze_startup_objects()
        await worker.run(stop)

    # uvloop, as the API runs on: it starts a job about 0.3 ms sooner than asyncio's own loop.
    uvloop.run(main())


@cli.command()
def recorder(
    city: Annotated[
        list[str] | None, typer.Option(help="City to record (repeat); all when absent")
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit when everything is recorded")] = False,
    with_stock: Annotated[
        bool,
        typer.Option(
            "--stock/--no-stock", help="Also give food orders' stock back (`rideflow stock`)"
        ),
    ] = True,
) -> None:
    """Record event streams, the request log, finished jobs and driver samples into SQL until
    SIGTERM or Ctrl-C (migrating the record first unless RIDEFLOW_DATABASE_AUTO_MIGRATE=false)."""
    from rideflow.workers.recorder import Recorder
    from rideflow.workers.stock import run_stock

    settings = Settings()
    logs.configure(settings.log_level)
    cities = chosen_cities(settings, city)

    async def main() -> None:
        stop = stop_on_signals()
        worker = Recorder(settings, cities, burst=burst)
        freeze_startup_objects()
        if not with_stock or burst:
            await worker.run(stop)
            return
        await asyncio.gather(worker.run(stop), run_stock(settings, cities, stop=stop))

    uvloop.run(main())


@cli.command()
def stock(
    city: Annotated[
        list[str] | None, typer.Option(help="City to serve (repeat); all when absent")
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit when there is nothing left to do")] = False,
) -> None:
    """Give food orders' reserved stock back when they are cancelled or find no driver, until
    SIGTERM or Ctrl-C."""
    from rideflow.workers.stock import run_stock

    settings = Settings()
    logs.configure(settings.log_level)
    cities = chosen_cities(settings, city)

    async def main() -> None:
        stop = stop_on_signals()
        freeze_startup_objects()
        await run_stock(settings, cities, stop=stop, burst=burst)

    uvloop.run(main())


@cli.command()
def up(
    concurrency: Annotated[int | None, typer.Option(help="Dispatcher concurrency")] = None,
) -> None:
    """Run everything on this machine: a managed Redis (unless RIDEFLOW_REDIS_URL is set), the
    API, two dispatchers (offers lapse on time while one is down), a job worker and the
    recorder (the record is migrated first)."""
    from rideflow.workers.supervisor import up as run_up

    settings = Settings()
    logs.configure(settings.log_level)
    raise typer.Exit(run_up(settings, concurrency or settings.dispatcher_concurrency))


@cli.command()
def audit(
    city: Annotated[
        list[str] | None, typer.Option(help="City to audit (repeat); all when absent")
    ] = None,
) -> None:
    """Report any driver with two active orders, any order with two drivers, any offer or lease
    past its deadline still held, any order in no known state; exit 1 when there is one."""
    from rideflow.dispatch.audit import audit as run_audit
    from rideflow.redis.connections import create_redis

    settings = Settings()

    async def main() -> list[str]:
        redis = create_redis(settings, "audit")
        try:
            return await run_audit(redis, city or [c.code for c in settings.cities])
        finally:
            await redis.aclose()

    found = asyncio.run(main())
    for line in found:
        typer.echo(line)
    typer.echo(f"audit: {len(found)} problem(s)" if found else "audit: clean")
    raise typer.Exit(1 if found else 0)


@cli.command()
def check() -> None:
    """Exit 0 when the configured Redis answers, 1 otherwise."""
    import redis

    from rideflow.redis.connections import redis_url

    try:
        redis.Redis.from_url(redis_url(Settings()), socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        typer.echo(f"redis unreachable: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo("ok")


db_cli = typer.Typer(
    help="The record's database: migrations (SQLite under the data directory, or the "
    "RIDEFLOW_DATABASE_URL one).",
    no_args_is_help=True,
)
cli.add_typer(db_cli, name="db")


@db_cli.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Migrate the database up to a revision (in one transaction: a failure changes nothing)."""
    from rideflow.record import db

    url = db.database_url(Settings())
    asyncio.run(db.upgrade(url, revision))
    typer.echo(f"at {asyncio.run(db.current(url)) or 'base'}")


@db_cli.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision ('base': empty)")],
) -> None:
    """Migrate the database down to a revision."""
    from rideflow.record import db

    url = db.database_url(Settings())
    asyncio.run(db.downgrade(url, revision))
    typer.echo(f"at {asyncio.run(db.current(url)) or 'base'}")


@db_cli.command("current")
def db_current() -> None:
    """Print the revision the database is at ('base': not migrated)."""
    from rideflow.record import db

    typer.echo(asyncio.run(db.current(db.database_url(Settings()))) or "base")


def main() -> None:
    """Entry point of the `rideflow` script."""
    cli()
