"""The `rideflow` command."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvloop

from rideflow import logs
from rideflow.config import MAX_PROCESSES, Settings
from rideflow.process import freeze_startup_objects, stop_on_signals

if TYPE_CHECKING:
    from rideflow.auth.accounts import Accounts
    from rideflow.auth.refresh import RefreshTokens

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
    reuse_port: Annotated[
        bool,
        typer.Option(
            help="Bind with SO_REUSEPORT, so that several API processes share the port "
            "(as `rideflow up --api-workers N` runs them)"
        ),
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(help="Name this process in an X-RideFlow-Process header on every answer"),
    ] = None,
) -> None:
    """Serve the HTTP API (needs a Redis: RIDEFLOW_REDIS_URL)."""
    import uvicorn

    from rideflow.api import listener
    from rideflow.api.serving import server_options

    settings = Settings()
    logs.configure(settings.log_level)
    if reuse_port or name:
        where = (host or settings.host, port or settings.port)
        try:
            sock = listener.bind(*where, reuse_port=reuse_port)
        except OSError as exc:
            typer.echo(f"rideflow api: cannot listen on {where[0]}:{where[1]}: {exc}", err=True)
            raise typer.Exit(1) from exc
        listener.serve(settings, sock, name)
        return
    uvicorn.run(
        "rideflow.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        **server_options(settings),
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
    sample: Annotated[
        bool,
        typer.Option(
            "--sample/--no-sample",
            help="Sample drivers' positions into the record (one recorder of several does)",
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
        worker = Recorder(settings, cities, burst=burst, sample=sample)
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


def _count(what: str, env: str) -> Any:
    """A `rideflow up` count option: 1 to MAX_PROCESSES; unset, the setting `env` decides."""
    return typer.Option(min=1, max=MAX_PROCESSES, help=f"{what}; env {env}", show_default=False)


@cli.command()
def up(
    concurrency: Annotated[int | None, typer.Option(help="Dispatcher concurrency")] = None,
    api_workers: Annotated[
        int | None, _count("API processes, sharing the port (default 1)", "RIDEFLOW_API_WORKERS")
    ] = None,
    dispatchers: Annotated[
        int | None, _count("Dispatchers (default 2)", "RIDEFLOW_DISPATCHERS")
    ] = None,
    job_workers: Annotated[
        int | None, _count("Job workers (default 1)", "RIDEFLOW_JOB_WORKERS")
    ] = None,
    recorders: Annotated[int | None, _count("Recorders (default 1)", "RIDEFLOW_RECORDERS")] = None,
) -> None:
    """Run everything on this machine: a managed Redis (unless RIDEFLOW_REDIS_URL is set), the
    API, two dispatchers (offers lapse on time while one is down), a job worker and the
    recorder (the record is migrated first); the flags run more of each."""
    from pydantic import ValidationError

    from rideflow.auth.secret import WeakSecret, jwt_secret
    from rideflow.workers.supervisor import Shape
    from rideflow.workers.supervisor import up as run_up

    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            typer.echo(
                f"rideflow up: RIDEFLOW_{name}={error.get('input')!r}: {error['msg']}", err=True
            )
        raise typer.Exit(2) from exc
    logs.configure(settings.log_level)
    default = Shape.of(settings)
    shape = Shape(
        api_workers or default.api,
        dispatchers or default.dispatchers,
        job_workers or default.jobs,
        recorders or default.recorders,
    )
    try:
        jwt_secret(settings)  # made (or refused) once here, so every part shares the one secret
    except WeakSecret as exc:
        typer.echo(f"rideflow up: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        "Accounts: make an admin with `rideflow users create --role admin --email you@example.com"
        " --name 'Your Name'`; others register at POST /v1/auth/register"
    )
    raise typer.Exit(run_up(settings, concurrency or settings.dispatcher_concurrency, shape))


@cli.command()
def audit(
    city: Annotated[
        list[str] | None, typer.Option(help="City to audit (repeat); all when absent")
    ] = None,
) -> None:
    """Report any driver with two active orders, any order with two drivers, any offer or lease
    past its deadline still held, any order in no known state; exit 1 when there is one."""
    from rideflow.dispatch.audit import audit as run_audit
    from rideflow.redis.connections import open_redis

    settings = Settings()

    async def main() -> list[str]:
        redis = await open_redis(settings, "audit")
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

    from rideflow.redis.connections import redis_url, sync_client

    try:
        sync_client(redis_url(Settings()), socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        typer.echo(f"redis unreachable: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo("ok")


@cli.command()
def simulate(
    base_url: Annotated[str, typer.Option(help="The running RideFlow's address")] = (
        "http://127.0.0.1:8000"
    ),
    city: Annotated[str | None, typer.Option(help="City code; the first configured")] = None,
    drivers: Annotated[int, typer.Option(min=1, help="Drivers (each a DRIVER account)")] = 50,
    customers: Annotated[
        int, typer.Option(min=0, help="Customer accounts; 0: one per two drivers, at least 5")
    ] = 0,
    rate: Annotated[float, typer.Option(min=0, help="Orders per minute, on average")] = 30.0,
    duration: Annotated[float, typer.Option(min=1, help="Seconds of demand")] = 60.0,
    tail: Annotated[
        float, typer.Option(min=0, help="Seconds live orders may take to finish afterwards")
    ] = 60.0,
    seed: Annotated[int, typer.Option(help="Seeds the demand and every agent's choices")] = 1,
    strategy: Annotated[
        str | None, typer.Option(help="Sent with each ride (any the API accepts)")
    ] = None,
    time_scale: Annotated[
        float, typer.Option(min=0.1, help="Simulated seconds per real second (moves, shifts)")
    ] = 10.0,
    speed_kmh: Annotated[float | None, typer.Option(help="Driving speed; the city's")] = None,
    accept: Annotated[float, typer.Option(min=0, max=1, help="Share of offers accepted")] = 0.85,
    reject: Annotated[float, typer.Option(min=0, max=1, help="Share rejected (rest: ignored)")] = (
        0.10
    ),
    reaction: Annotated[
        tuple[float, float], typer.Option(help="Seconds a driver takes to answer: min max")
    ] = (1.0, 4.0),
    area_km: Annotated[float, typer.Option(min=0.5, help="Radius of the simulated district")] = 5.0,
    restaurants: Annotated[
        int, typer.Option(min=0, help="Restaurants made through the admin API (needs an admin)")
    ] = 3,
    food_share: Annotated[
        float, typer.Option(min=0, max=1, help="Share of orders that are food orders")
    ] = 0.25,
    admin_email: Annotated[
        str | None,
        typer.Option(help="An ADMIN account for set-up (password: RIDEFLOW_ADMIN_PASSWORD)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    demand_only: Annotated[
        bool, typer.Option(help="Print the demand schedule as JSON and exit (no server needed)")
    ] = False,
) -> None:
    """Simulate a city against a running RideFlow through its public API only: drivers and
    customers register, log in, drive and order; progress each second, then a report."""
    import json
    import os
    import sys

    from rideflow.sim.driver import Behaviour
    from rideflow.sim.geo import LatLng
    from rideflow.sim.report import text
    from rideflow.sim.runner import Options
    from rideflow.sim.runner import simulate as run_simulation

    settings = Settings()
    known = {c.code: c for c in settings.cities}
    chosen = known.get(city or settings.cities[0].code)
    if chosen is None:
        raise typer.BadParameter(f"unknown city {city!r}; known: {sorted(known)}")
    if accept + reject > 1:
        raise typer.BadParameter("--accept plus --reject must not exceed 1")
    password = os.environ.get(ADMIN_PASSWORD_ENV)
    if admin_email and not password:
        raise typer.BadParameter(f"{ADMIN_PASSWORD_ENV} must hold the admin's password")
    options = Options(
        base_url=base_url,
        city=chosen.code,
        center=LatLng(chosen.lat, chosen.lng),
        area_km=area_km,
        drivers=drivers,
        customers=customers,
        rate_per_min=rate,
        duration_s=duration,
        tail_s=tail,
        seed=seed,
        strategy=strategy,
        behaviour=Behaviour(
            accept=accept,
            reject=reject,
            reaction_s=reaction,
            speed_mps=(speed_kmh or chosen.speed_kmh) / 3.6,
            time_scale=time_scale,
        ),
        restaurants=restaurants,
        food_share=food_share,
        admin_email=admin_email,
        admin_password=password,
    )
    if demand_only:
        schedule = options.schedule()
        typer.echo(json.dumps([r.json() for r in schedule], separators=(",", ":")))
        return

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = asyncio.run(run_simulation(options, progress))
    typer.echo(json.dumps(result, indent=2) if as_json else text(result))
    raise typer.Exit(1 if result["final"].get("LIVE") else 0)


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


users_cli = typer.Typer(
    help="Accounts in the record: create one (ADMIN accounts are made only here), disable or "
    "enable one.",
    no_args_is_help=True,
)
cli.add_typer(users_cli, name="users")
ADMIN_PASSWORD_ENV = "RIDEFLOW_ADMIN_PASSWORD"


class UserRole(StrEnum):
    admin = "admin"
    customer = "customer"
    driver = "driver"


@users_cli.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Login email (unique, whatever its case)")],
    name: Annotated[str, typer.Option(help="The person's name")],
    role: Annotated[UserRole, typer.Option(case_sensitive=False)] = UserRole.customer,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
    vehicle: Annotated[str | None, typer.Option(help="Drivers: their vehicle")] = None,
    city: Annotated[str | None, typer.Option(help="Drivers: their city code")] = None,
) -> None:
    """Create an account. The password comes from --password-stdin, else RIDEFLOW_ADMIN_PASSWORD,
    else a prompt: never from a flag, which the shell's history would keep."""
    from rideflow.auth.principal import Role
    from rideflow.auth.schemas import Email

    _check(Email, email, "--email")
    password = _password(password_stdin)

    async def create(settings: Settings) -> str:
        async with _accounts(settings) as (accounts, _):
            view = await accounts.create(
                email=email,
                password=password,
                role=Role(role.value.upper()),
                name=name,
                vehicle=vehicle,
                city=city,
            )
        return f"created {view.role.value} account {view.id} ({view.email})"

    typer.echo(_run_accounts(create))


@users_cli.command("disable")
def users_disable(email: Annotated[str, typer.Option(help="The account's email")]) -> None:
    """Disable an account: its logins and refreshes are refused, its refresh tokens revoked,
    its access tokens refused by every API process within about a second and its sockets
    closed (4401)."""

    async def disable(settings: Settings) -> str:
        from redis.exceptions import RedisError

        from rideflow.auth.revocations import keep_for, revoke_subject

        async with _accounts(settings) as (accounts, refresh):
            view = await accounts.set_disabled(email, True)
            try:
                revoked = f"{await refresh.revoke_user(view.id)} login(s) revoked"
                await revoke_subject(refresh.redis, view.id, keep_for(settings))
                revoked += ", its access tokens refused"
            except RedisError as exc:  # refreshes are refused anyway: they read the flag
                revoked = (
                    f"its tokens could not be revoked now (Redis: {exc}): its access tokens "
                    f"stay valid until they expire, within {settings.access_token_ttl_s} s"
                )
        return f"disabled {view.id} ({view.email}); {revoked}"

    typer.echo(_run_accounts(disable))


@users_cli.command("enable")
def users_enable(email: Annotated[str, typer.Option(help="The account's email")]) -> None:
    """Enable a disabled account again."""

    async def enable(settings: Settings) -> str:
        async with _accounts(settings) as (accounts, _):
            view = await accounts.set_disabled(email, False)
        return f"enabled {view.id} ({view.email})"

    typer.echo(_run_accounts(enable))


def _check(kind: Any, value: str, option: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"], param_hint=option) from exc


def _password(from_stdin: bool) -> str:
    import os
    import sys

    from rideflow.auth.schemas import Password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif os.environ.get(ADMIN_PASSWORD_ENV):
        password = os.environ[ADMIN_PASSWORD_ENV]
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    _check(Password, password, "password")
    return password


@asynccontextmanager
async def _accounts(settings: Settings) -> AsyncIterator[tuple[Accounts, RefreshTokens]]:
    """The account store and refresh tokens on the configured record and Redis (the record
    migrated first unless RIDEFLOW_DATABASE_AUTO_MIGRATE=false)."""
    from rideflow.auth.accounts import Accounts
    from rideflow.auth.passwords import Passwords
    from rideflow.auth.refresh import RefreshTokens
    from rideflow.redis.connections import open_redis
    from rideflow.services import build_services

    redis = await open_redis(settings, "cli")
    services = build_services(settings, redis)
    try:
        if settings.database_auto_migrate:
            await services.record.migrate()
        yield (
            Accounts(services.record, Passwords(settings), services.drivers),
            RefreshTokens(redis, services.scripts, settings),
        )
    finally:
        await services.record.dispose()
        await redis.aclose()


def _run_accounts(action: Callable[[Settings], Coroutine[Any, Any, str]]) -> str:
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from rideflow.errors import RideflowError

    settings = Settings()
    try:
        return asyncio.run(action(settings))
    except RideflowError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    except RedisError as exc:
        typer.echo(
            f"error: Redis is unreachable ({exc}); start `rideflow up` or set RIDEFLOW_REDIS_URL",
            err=True,
        )
        raise typer.Exit(1) from exc
    except (SQLAlchemyError, OSError) as exc:
        typer.echo(f"error: the record's database failed ({type(exc).__name__}: {exc})", err=True)
        raise typer.Exit(1) from exc


def main() -> None:
    """Entry point of the `rideflow` script."""
    cli()
