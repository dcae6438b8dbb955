"""Settings: one validated object, read from `RIDEFLOW_*` environment variables."""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rideflow.auth.principal import Role

log = logging.getLogger(__name__)
Algorithm = Literal["fixed_window", "sliding_window", "token_bucket"]
Strategy = Literal["nearest", "rating", "eta", "batch"]
BatchCost = Literal["distance", "eta"]


class City(BaseModel):
    """A service area: a circle around a centre point."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,15}$")
    name: str
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    radius_km: float = Field(gt=0, le=200)
    strategy: Strategy = Field(default="nearest", description="Ranking when a ride names none")
    speed_kmh: float = Field(
        default=20.0, gt=0, le=200, description="Speed for ETAs when a driver's own is unknown"
    )


class RatePolicy(BaseModel):
    """How many requests a client may make; `burst` only matters to the token bucket."""

    algorithm: Algorithm = "sliding_window"
    limit: int = Field(gt=0)
    window_s: float = Field(gt=0)
    burst: int | None = Field(default=None, gt=0)


class RateRoute(BaseModel):
    """Which policy guards a route: `method` may be `*`, `path` may hold `{param}` segments."""

    method: str = "*"
    path: str
    policy: str


MAX_PROCESSES = 64
"""Most processes of one kind `rideflow up` starts (a typo of 100 should not fork 100)."""
DEFAULT_CITIES = [City(code="blr", name="Bengaluru", lat=12.9716, lng=77.5946, radius_km=30)]
DEFAULT_POLICIES = {
    "default": RatePolicy(algorithm="sliding_window", limit=600, window_s=60),
    "create": RatePolicy(algorithm="token_bucket", limit=20, window_s=1, burst=40),
    "positions": RatePolicy(algorithm="token_bucket", limit=200, window_s=1, burst=400),
}
DEFAULT_ROUTES = [
    RateRoute(method="POST", path="/v1/rides", policy="create"),
    RateRoute(method="POST", path="/request-ride", policy="create"),
    RateRoute(method="PUT", path="/v1/drivers/{driver_id}/location", policy="positions"),
    RateRoute(method="POST", path="/v1/drivers/locations", policy="positions"),
]


class Settings(BaseSettings):
    """Everything configurable; tests build their own instance instead of patching the env."""

    model_config = SettingsConfigDict(env_prefix="RIDEFLOW_", env_nested_delimiter="__")

    redis_url: str | None = None
    managed_redis_port: int = 6399
    data_dir: str = "var"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    # What `rideflow up` runs (its flags --api-workers, --dispatchers, --job-workers and
    # --recorders override these).
    api_workers: int = Field(
        default=1,
        ge=1,
        le=MAX_PROCESSES,
        description="`rideflow up`: API processes, all serving `port` (SO_REUSEPORT)",
    )
    dispatchers: int = Field(
        default=2,
        ge=1,
        le=MAX_PROCESSES,
        description="`rideflow up`: dispatchers; two or more, so that offers still lapse on "
        "time while one is down",
    )
    job_workers: int = Field(default=1, ge=1, le=MAX_PROCESSES, description="`rideflow up`")
    recorders: int = Field(default=1, ge=1, le=MAX_PROCESSES, description="`rideflow up`")
    redis_pool_size: int = 64
    redis_cluster_node_connections: int = Field(
        default=2048,
        gt=0,
        description="On a Redis Cluster: most connections a process opens to one node. redis-py's "
        "cluster client fails a command past it (it does not wait as the single client's pool "
        "does), so it is sized for every request in flight at once",
    )

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL of the record; unset: SQLite at <data_dir>/rideflow.db",
    )
    database_echo: bool = False
    database_auto_migrate: bool = Field(
        default=True, description="Migrate the record to head when a process starts"
    )
    record_enabled: bool = Field(
        default=True,
        description="Keep city event streams until the recorder has them (off: capped, no record)",
    )
    recorder_batch: int = Field(default=1_000, gt=0, description="Most entries per transaction")
    recorder_backlog_warn: int = Field(
        default=200_000, gt=0, description="Unrecorded entries past which /readyz says so"
    )
    track_sample_s: float = Field(default=10.0, gt=0, description="driver_tracks: one row per")
    event_stream_cap: int = Field(
        default=100_000, gt=0, description="City event stream cap when record_enabled is off"
    )
    metrics_sample_s: float = Field(
        default=5.0, gt=0, description="How often the recorder samples stream lengths for /metrics"
    )
    request_log_enabled: bool = Field(
        default=True, description="Every API request leaves an entry on the request-log stream"
    )
    request_log_cap: int = Field(
        default=1_000_000,
        gt=0,
        description="Request-log stream cap (MAXLEN ~): analytics, bounded when no recorder runs",
    )
    request_log_flush_ms: int = Field(default=100, gt=0, description="Most buffering per API")
    request_log_buffer: int = Field(default=500, gt=0, description="Entries that force a flush")
    jobs_finished_cap: int = Field(
        default=100_000, gt=0, description="Finished-jobs stream cap when record_enabled is off"
    )

    cities: list[City] = Field(default_factory=lambda: list(DEFAULT_CITIES))

    driver_stale_s: float = Field(default=30.0, gt=0)
    search_radii_km: list[float] = Field(default_factory=lambda: [1.0, 2.0, 3.5, 5.0])
    search_count: int = Field(default=10, gt=0)
    ride_deadline_s: float = Field(default=120.0, gt=0)
    delivery_deadline_s: float = Field(default=120.0, gt=0)
    ride_offer_window_s: float = Field(
        default=15.0, gt=0, description="How long a driver has to answer a ride offer"
    )
    delivery_offer_window_s: float = Field(
        default=30.0, gt=0, description="How long a driver has to answer a delivery offer"
    )
    offer_lease_grace_ms: int = Field(
        default=5_000, ge=0, description="A lease outlives its offer's deadline by this much"
    )
    max_lapses: int = Field(
        default=3, gt=0, description="Offers a driver may let lapse in a row before going offline"
    )
    offer_sweep_s: float = Field(default=0.05, gt=0, le=0.2)
    retry_base_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=8.0, gt=0)
    order_retention_s: int = Field(
        default=86_400,
        gt=0,
        description="How long a finished order, its events and its offers are kept in Redis",
    )
    claim_idle_ms: int = Field(default=30_000, gt=0)
    retry_lease_ms: int = Field(default=30_000, gt=0)
    dispatcher_concurrency: int = Field(default=16, gt=0)
    batch_window_s: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="Strategy batch: orders are collected this long (from the oldest waiting) "
        "before one assignment is solved for all of them",
    )
    batch_trigger_orders: int = Field(
        default=500,
        gt=0,
        description="Strategy batch: solve at once, before the window ends, when this many "
        "orders of a city wait",
    )
    batch_zone_cap: int = Field(
        default=500,
        gt=0,
        description="Strategy batch: most orders in one solve; a zone with more is solved in "
        "chunks of this many, oldest first (bench figure 19: a solve at the cap)",
    )
    batch_zone_km: float = Field(
        default=10.0, gt=0, description="Strategy batch: orders are batched per square of this side"
    )
    batch_candidates: int = Field(
        default=10, gt=0, description="Strategy batch: the K nearest available drivers per order"
    )
    batch_cost: BatchCost = Field(
        default="distance",
        description="Strategy batch: what the assignment minimises, pickup distance or ETA",
    )

    job_concurrency: int = Field(default=32, gt=0, description="Jobs run at once per worker")
    job_claim_idle_ms: int = Field(
        default=10_000, gt=0, description="A running job's claim is renewed well within this"
    )
    job_retry_base_s: float = Field(default=1.0, gt=0)
    job_retry_max_s: float = Field(default=60.0, gt=0)
    job_timeout_s: float = Field(default=300.0, gt=0, description="Default per-attempt timeout")
    job_result_ttl_s: int = Field(default=86_400, gt=0, description="How long results are kept")
    job_max_lost: int = Field(
        default=5, gt=0, description="Times a job may lose its worker before it fails"
    )
    job_grace_s: float = Field(default=10.0, ge=0, description="SIGTERM: time to finish jobs")
    job_modules: list[str] = Field(
        default_factory=list, description="Modules to import for their tasks (`module.path`)"
    )
    flaky_fail_rate: float = Field(default=0.3, ge=0, le=1)

    menu_cache_enabled: bool = Field(
        default=True, description="Serve menus from the Redis cache (off: every read is SQL)"
    )
    menu_cache_ttl_s: int = Field(default=300, gt=0, description="A cached menu lives this long")
    menu_cache_jitter_s: int = Field(
        default=60, ge=0, description="Plus up to this much at random, so entries expire apart"
    )
    menu_fill_lock_ms: int = Field(
        default=2_000, gt=0, description="How long one process may hold a cold menu's fill lock"
    )
    menu_fill_wait_s: float = Field(
        default=3.0, gt=0, description="Most a reader waits for another's fill before reading SQL"
    )
    food_reservation_ttl_s: int = Field(
        default=7 * 86_400, gt=0, description="How long a food order's stock reservation is kept"
    )

    env: Literal["development", "production"] = Field(
        default="development",
        description="production: refuse to start without a strong RIDEFLOW_JWT_SECRET",
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 key of access tokens (>= 32 bytes); unset: <data_dir>/jwt-secret",
    )
    jwt_issuer: str = "rideflow"
    jwt_audience: str = "rideflow-api"
    jwt_leeway_s: int = Field(default=5, ge=0, description="Clock skew allowed on exp / iat")
    access_token_ttl_s: int = Field(default=900, gt=0, description="Access tokens live this long")
    refresh_token_ttl_s: int = Field(
        default=30 * 86_400, gt=0, description="A refresh token (and its family) lives this long"
    )
    password_reset_ttl_s: int = Field(
        default=900, gt=0, description="A password-reset token may be used this long, once"
    )
    password_hash_time_cost: int = Field(
        default=3,
        ge=1,
        le=20,
        description="argon2id passes; a hash made with other costs is upgraded at the next login",
    )
    password_hash_memory_kib: int = Field(
        default=65_536, ge=64, le=4_194_304, description="argon2id memory per hash, KiB"
    )
    login_account_limit: RatePolicy = Field(
        default_factory=lambda: RatePolicy(algorithm="sliding_window", limit=10, window_s=900),
        description="Login attempts per account (email), failed or not",
    )
    login_ip_limit: RatePolicy = Field(
        default_factory=lambda: RatePolicy(algorithm="sliding_window", limit=30, window_s=60),
        description="Login attempts per client address, failed or not",
    )
    email_transport: Literal["outbox", "log"] = Field(
        default="outbox",
        description="send_email: a file per message under <data_dir>/outbox (development), or "
        "a log line; production plugs a real sender (rideflow.jobs.tasks.MAILER)",
    )

    ws_heartbeat_s: float = Field(
        default=15.0, gt=0, description="WebSocket: a ping every; two unanswered close the socket"
    )
    ws_send_queue: int = Field(
        default=256, gt=0, description="WebSocket: messages queued per socket before 1013"
    )
    ws_position_every_s: float = Field(
        default=1.0, ge=0, description="WebSocket: a tracked driver's position at most once per"
    )
    ws_counts_every_s: float = Field(
        default=5.0, gt=0, description="WebSocket: driver counts on an admin's city feed, every"
    )
    ws_snapshot_every_s: float = Field(
        default=1.0,
        gt=0,
        description="WebSocket: the driver snapshot (positions and states) on an admin's city "
        "feed that asked for it (the dashboard's map), every",
    )
    ws_compression: bool = Field(
        default=False,
        description="WebSocket: permessage-deflate when a client offers it. Off by default: its "
        "zlib state costs about 45 KiB per socket and the messages are a few hundred bytes",
    )
    ws_max_message_bytes: int = Field(
        default=64 * 1024, gt=0, description="WebSocket: a larger client message closes with 1009"
    )

    rate_limit_enabled: bool = True
    rate_policies: dict[str, RatePolicy] = Field(default_factory=lambda: dict(DEFAULT_POLICIES))
    rate_routes: list[RateRoute] = Field(default_factory=lambda: list(DEFAULT_ROUTES))
    rate_default_policy: str | None = "default"
    rate_role_multipliers: dict[Role, float] = Field(
        default_factory=lambda: {Role.ADMIN: 10.0},
        description="A signed-in user's limits are each policy's times their role's factor "
        "(absent: 1); anonymous calls, counted per address, get the policies as written",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins a browser may call the API from (CORS); empty: CORS off",
    )
    cors_allow_credentials: bool = Field(
        default=False, description="Let those origins send cookies / HTTP auth (CORS)"
    )
    trusted_proxies: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=512 * 1024, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _renamed_variables(cls, data: Any) -> Any:
        """Environment variables renamed in this release are still read, with a warning."""
        if not isinstance(data, dict):
            return data
        for old, field in RENAMED_VARIABLES.items():
            if old in os.environ and field not in data and _env_name(field) not in os.environ:
                log.warning("%s is deprecated; set %s instead", old, _env_name(field))
                data[field] = os.environ[old]
        return data

    @field_validator("search_radii_km")
    @classmethod
    def _radii_ascending(cls, radii: list[float]) -> list[float]:
        if not radii or any(r <= 0 for r in radii) or radii != sorted(radii):
            raise ValueError("search radii must be positive and ascending")
        return radii

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        if not self.cities:
            raise ValueError("at least one city must be configured")
        if len({c.code for c in self.cities}) != len(self.cities):
            raise ValueError("city codes must be unique")
        names = set(self.rate_policies)
        missing = {r.policy for r in self.rate_routes} - names
        if self.rate_default_policy is not None and self.rate_default_policy not in names:
            missing.add(self.rate_default_policy)
        if missing:
            raise ValueError(f"rate routes name unknown policies: {sorted(missing)}")
        for proxy in self.trusted_proxies:
            ipaddress.ip_network(proxy, strict=False)
        if any(f <= 0 for f in self.rate_role_multipliers.values()):
            raise ValueError("rate_role_multipliers must be positive")
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError("cors_origins must name the origins when credentials are allowed")
        # The retention is also how long an offer's hash is kept: one gone before its deadline
        # was swept stranded its order and driver. Scripts keep an offer past its lease anyway
        # (a delivery may set its own window); this refuses a setting that contradicts itself.
        longest_s = max(self.ride_offer_window_s, self.delivery_offer_window_s)
        if self.order_retention_s <= longest_s + self.offer_lease_grace_ms / 1000:
            raise ValueError(
                f"order_retention_s ({self.order_retention_s}) must exceed the longest offer "
                f"window ({longest_s:g} s) plus the lease grace "
                f"({self.offer_lease_grace_ms / 1000:g} s)"
            )
        return self

    def event_caps(self) -> tuple[int, int]:
        """The first two ARGV of every script that records order events: the order stream's
        cap and the city stream's (0: uncapped, kept until the recorder has it)."""
        from rideflow.redis.scripts import ORDER_EVENTS_CAP

        return ORDER_EVENTS_CAP, 0 if self.record_enabled else self.event_stream_cap

    @property
    def jobs_finished_stream_cap(self) -> int:
        """The finished-jobs stream's cap (0: uncapped, kept until the recorder has it)."""
        return 0 if self.record_enabled else self.jobs_finished_cap

    def deadline_ms(self, kind: str) -> int:
        """How long an order of this kind may search before NO_DRIVER_FOUND."""
        seconds = self.ride_deadline_s if kind == "ride" else self.delivery_deadline_s
        return int(seconds * 1000)

    def offer_window_ms(self, kind: str) -> int:
        """How long a driver has to answer an offer of this kind (a delivery may set its own)."""
        seconds = self.ride_offer_window_s if kind == "ride" else self.delivery_offer_window_s
        return int(seconds * 1000)

    @property
    def stale_ms(self) -> int:
        """A driver silent this long is never matched."""
        return int(self.driver_stale_s * 1000)

    @property
    def retry_base_ms(self) -> int:
        return int(self.retry_base_s * 1000)

    @property
    def retry_max_ms(self) -> int:
        return int(self.retry_max_s * 1000)

    @property
    def job_retry_base_ms(self) -> int:
        return int(self.job_retry_base_s * 1000)

    @property
    def job_retry_max_ms(self) -> int:
        return int(self.job_retry_max_s * 1000)

    @property
    def search_radii_m(self) -> list[float]:
        """The search steps in metres."""
        return [r * 1000 for r in self.search_radii_km]

    @property
    def city_speed_mps(self) -> dict[str, float]:
        """Each city's speed for ETAs, in m/s."""
        return {c.code: c.speed_kmh / 3.6 for c in self.cities}

    @property
    def trusted_networks(self) -> list[Network]:
        """The trusted proxies, parsed."""
        return [ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies]


RENAMED_VARIABLES = {"RIDEFLOW_RIDE_RETENTION_S": "order_retention_s"}
"""Old environment variable -> the field it now sets; read for one release."""


def _env_name(field: str) -> str:
    return f"RIDEFLOW_{field.upper()}"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
"""A trusted proxy's network."""
