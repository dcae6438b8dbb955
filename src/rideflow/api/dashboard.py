"""The live dashboard (`/dashboard`: static page, assets in `rideflow/web`) and the ADMIN routes
only it needs: the matcher's search run on demand, the Redis commands an order's assignment ran,
and today's leaderboard. The page signs in with `POST /v1/auth/token` and calls everything
else with the token; the map is fed by the admin WebSocket (`subscribe.city`, `snapshot`)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path as FilePath
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from rideflow.api.deps import OrdersDep, RedisDep
from rideflow.api.problems import responses
from rideflow.api.security import AdminCaller
from rideflow.config import Settings, Strategy
from rideflow.dispatch import explain
from rideflow.dispatch.geo import with_profiles
from rideflow.dispatch.matcher import Candidate, rank
from rideflow.errors import NotFound
from rideflow.orders.store import utc_day
from rideflow.redis import keys
from rideflow.schemas import ID_PATTERN

WEB = FilePath(__file__).resolve().parent.parent / "web"
router = APIRouter(prefix="/v1/admin", tags=["admin"])
MAX_HITS = 50


async def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]
CityCode = Annotated[str, Query(min_length=1, max_length=16, pattern=ID_PATTERN)]


def install(app: FastAPI) -> None:
    """The page at `/dashboard` and its assets at `/dashboard/assets` (public: they hold no
    data; every data call the page makes needs an ADMIN token)."""
    app.mount("/dashboard/assets", StaticFiles(directory=WEB), name="dashboard-assets")

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(WEB / "dashboard.html", headers={"Cache-Control": "no-cache"})


class Hit(BaseModel):
    rank: int = Field(description="1 is the driver the strategy would offer the order first")
    driver_id: str
    distance_m: float
    lat: float
    lng: float
    rating: float | None
    speed_mps: float | None


class GeoSearch(BaseModel):
    city: str
    lat: float
    lng: float
    radius_km: float
    strategy: Strategy
    command: str = Field(description="The command run, as `redis-cli` shows it")
    explanation: str
    took_ms: float = Field(description="Time of the search and the profile read, in ms")
    hits: list[Hit]


@router.get(
    "/geosearch",
    response_model=GeoSearch,
    responses=responses(404, 422),
    summary="Run the matcher's driver search at a point (read-only)",
    description="The `GEOSEARCH` of the city's pool of available drivers that dispatch runs "
    "(nearest first, within the radius), ranked by the strategy as the matcher ranks them. "
    "Reserves nothing.",
)
async def geosearch(
    caller: AdminCaller,
    redis: RedisDep,
    settings: SettingsDep,
    city: CityCode,
    lat: Annotated[float, Query(ge=-90, le=90)],
    lng: Annotated[float, Query(ge=-180, le=180)],
    radius_km: Annotated[float, Query(gt=0, le=50)] = 5.0,
    strategy: Strategy = "nearest",
    count: Annotated[int, Query(ge=1, le=MAX_HITS)] = 10,
) -> GeoSearch:
    if city not in {c.code for c in settings.cities}:
        raise NotFound(f"no city {city!r}")
    started = time.perf_counter()
    pool = keys.pool(city)
    reply: list[Any] = await redis.geosearch(
        pool, longitude=lng, latitude=lat, radius=radius_km, unit="km", sort="ASC",
        count=count, withdist=True, withcoord=True,
    )  # fmt: skip
    where = {str(h[0]): (float(h[2][1]), float(h[2][0])) for h in reply}
    found = await with_profiles(
        redis, city, [Candidate(str(h[0]), float(h[1]) * 1000) for h in reply]
    )
    ranked = rank(strategy, found, settings.city_speed_mps[city])
    took = (time.perf_counter() - started) * 1000
    return GeoSearch(
        city=city, lat=lat, lng=lng, radius_km=radius_km, strategy=strategy,
        command=f"GEOSEARCH {pool} FROMLONLAT {lng} {lat} BYRADIUS {radius_km} km ASC "
        f"COUNT {count} WITHDIST WITHCOORD",
        explanation=f"Finds up to {count} drivers of {city}'s pool of available drivers (a GEO "
        f"set: online, fresh, holding no order) within {radius_km} km, nearest first; the "
        f"matcher then ranks them by {strategy!r} and offers the first it can reserve.",
        took_ms=round(took, 3),
        hits=[
            Hit(rank=i + 1, driver_id=c.driver_id, distance_m=round(c.distance_m, 1),
                lat=where[c.driver_id][0], lng=where[c.driver_id][1], rating=c.rating,
                speed_mps=c.speed_mps)
            for i, c in enumerate(ranked)
        ],
    )  # fmt: skip


class ConsoleCommand(BaseModel):
    text: str
    explanation: str


class ConsoleStep(BaseModel):
    status: str
    at: str
    script: str = Field(description="The Lua script (one atomic call) that made this step")
    summary: str
    commands: list[ConsoleCommand]


class Console(BaseModel):
    order_id: str
    kind: str
    steps: list[ConsoleStep]


@router.get(
    "/orders/{order_id}/commands",
    response_model=Console,
    responses=responses(404),
    summary="The Redis commands an order's assignment ran, explained",
    description="One entry per event of the order: the Lua step that made it and its main "
    "commands with the order's real keys, each explained in plain words.",
)
async def order_commands(
    caller: AdminCaller,
    orders: OrdersDep,
    redis: RedisDep,
    settings: SettingsDep,
    order_id: Annotated[str, Path(min_length=3, max_length=128, pattern=ID_PATTERN)],
) -> Console:
    city = order_id.partition("-")[0]
    if city not in {c.code for c in settings.cities}:
        raise NotFound(f"no order with id {order_id!r}")
    fields = await redis.hmget(keys.order(city, order_id), ["kind", "pickup", "window_ms"])
    kind, pickup, window = cast(list[str | None], fields)
    if kind == "ride":
        events = await orders.events(order_id, "ride")
    elif kind == "delivery":
        events = await orders.events(order_id, "delivery")
    else:
        raise NotFound(f"no order with id {order_id!r} in Redis (finished orders expire)")
    lat, _, lng = (pickup or "0,0").partition(",")
    order = explain.Order(
        city=city, order_id=order_id, kind=kind, lat=float(lat), lng=float(lng),
        first_radius_m=settings.search_radii_m[0], search_count=settings.search_count,
        window_ms=int(float(window)) if window else settings.offer_window_ms(kind),
    )  # fmt: skip
    steps = explain.explain(order, [e.model_dump(mode="json") for e in events])
    return Console(
        order_id=order_id, kind=kind, steps=[ConsoleStep.model_validate(asdict(s)) for s in steps]
    )


class Leader(BaseModel):
    driver_id: str
    trips: int


class Leaderboard(BaseModel):
    city: str
    day: str = Field(description="UTC day, YYYYMMDD")
    drivers: list[Leader]


@router.get(
    "/leaderboard",
    response_model=Leaderboard,
    responses=responses(404, 422),
    summary="Drivers by trips completed today",
    description="From the city's sorted set of the day, incremented by the step that completes "
    "a ride or delivers a delivery; most trips first.",
)
async def leaderboard(
    caller: AdminCaller,
    redis: RedisDep,
    settings: SettingsDep,
    city: CityCode,
    day: Annotated[str | None, Query(pattern=r"^\d{8}$", description="YYYYMMDD (UTC)")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Leaderboard:
    if city not in {c.code for c in settings.cities}:
        raise NotFound(f"no city {city!r}")
    day = day or utc_day()
    board = await _top(redis, keys.leaderboard(city, day), limit)
    return Leaderboard(city=city, day=day, drivers=board)


async def _top(redis: Redis, key: str, limit: int) -> list[Leader]:
    rows = cast(list[tuple[str, float]], await redis.zrevrange(key, 0, limit - 1, withscores=True))
    return [Leader(driver_id=str(m), trips=int(s)) for m, s in rows]
