"""Every Redis key RideFlow uses. City keys carry the `{city}` hash tag so that one city's keys
share a Redis Cluster slot and multi-key Lua scripts stay atomic there."""

PREFIX = "rf"
DISPATCH_GROUP = "dispatchers"
RECORDER_GROUP = "recorder"
"""The group the recorder reads every event stream with (city events, request log, jobs)."""
DRIVER_DIRECTORY = f"{PREFIX}:drivers"


def _city(city: str, *parts: str) -> str:
    return ":".join((PREFIX, "{" + city + "}", *parts))


def requests(city: str) -> str:
    """Stream of orders waiting for dispatch, in arrival order (and orders sent back to it when
    an offer is rejected or lapses)."""
    return _city(city, "requests")


def dead_requests(city: str) -> str:
    """Stream of request entries that failed to be handled `MAX_DELIVERIES` times."""
    return _city(city, "requests", "dead")


def pool(city: str) -> str:
    """GEO set of available drivers (online, fresh, holding no order)."""
    return _city(city, "pool")


def seen(city: str) -> str:
    """Sorted set of driver id -> last position time in ms (GEO sets cannot expire members)."""
    return _city(city, "seen")


def retries(city: str) -> str:
    """Sorted set of order id -> when to look for a driver again, in ms."""
    return _city(city, "retry")


def order(city: str, order_id: str) -> str:
    """Hash holding one order's (a ride's or a delivery's) state and transition times."""
    return _city(city, "order", order_id)


def order_events(city: str, order_id: str) -> str:
    """Stream of one order's transitions (capped), for history and for resuming live updates."""
    return _city(city, "order", order_id, "events")


def excluded(city: str, order_id: str) -> str:
    """Set of drivers who rejected or let lapse an offer of this order: never offered it again."""
    return _city(city, "order", order_id, "excluded")


def city_events(city: str) -> str:
    """Stream of every order transition in the city, in the order Redis applied them (capped):
    what the recorder projects into SQL and what audits replay."""
    return _city(city, "events")


def offer(city: str, offer_id: str) -> str:
    """Hash holding one offer: order, driver, fencing token, deadline, status."""
    return _city(city, "offer", offer_id)


def offers_due(city: str) -> str:
    """Sorted set of pending offer id -> deadline in ms, swept by the dispatchers."""
    return _city(city, "offers", "due")


def lease(city: str, driver_id: str) -> str:
    """String `token|order|offer` while a driver is reserved for an offer (SET NX PX)."""
    return _city(city, "lease", driver_id)


def fence(city: str) -> str:
    """Counter handing out the city's fencing tokens, increasing with every offer."""
    return _city(city, "fence")


def driver(city: str, driver_id: str) -> str:
    """Hash holding one driver's profile, status, position, current order and pending offer."""
    return _city(city, "driver", driver_id)


def leaderboard(city: str, day: str) -> str:
    """Sorted set of driver id -> trips completed (rides completed, deliveries delivered) on one
    UTC day (`YYYYMMDD`), incremented by the completing step; expires two days later."""
    return _city(city, "leaderboard", day)


def driver_ratings(city: str, driver_id: str) -> str:
    """Set of the rating jobs already applied to a driver (ratings are applied once)."""
    return _city(city, "driver", driver_id, "ratings")


def trip_pin_misses(city: str, order_id: str) -> str:
    """Counter of wrong trip PINs presented for an order (expires; at the limit it is the lock)."""
    return _city(city, "pin", order_id)


def idempotency(city: str, scope: str, key: str) -> str:
    """String holding the id created under an `Idempotency-Key`."""
    return _city(city, "idem", scope, key)


STOCK_GROUP = "stock"
"""The consumer group of the stock releaser on each city's event stream."""


def menu_version(city: str, restaurant_id: str) -> str:
    """Counter bumped after every committed write to a restaurant or its menu: the version
    cached menus are keyed by."""
    return _city(city, "menu", restaurant_id, "ver")


def menu_cache(city: str, restaurant_id: str, version: int) -> str:
    """String `etag\nbody`: a restaurant's menu as of `version` (TTL with jitter)."""
    return _city(city, "menu", restaurant_id, f"v{version}")


def menu_fill_lock(city: str, restaurant_id: str, version: int) -> str:
    """`SET NX PX` lock of the one process filling a cold menu version."""
    return _city(city, "menu", restaurant_id, f"v{version}", "lock")


def stock(city: str, item_id: str) -> str:
    """Integer: a limited menu item's live remaining count (SQL holds the configured stock)."""
    return _city(city, "stock", item_id)


def stock_buyers(city: str, item_id: str) -> str:
    """Hash of customer id -> units of a limited item reserved (per-customer limit)."""
    return _city(city, "stock", item_id, "buyers")


def restaurant_orders(city: str, restaurant_id: str) -> str:
    """Sorted set of a restaurant's food order ids -> accepted at (ms): which may still be open
    (pruned of finished ones when read)."""
    return _city(city, "restaurant", restaurant_id, "orders")


def reservation(city: str, order_id: str) -> str:
    """Hash of a food order's reserved stock: `item:<id>` -> qty, customer, state (held |
    released): stock returns at most once."""
    return _city(city, "food", order_id, "reservation")


def rate_limit(policy: str, client: str) -> str:
    """State of one client under one rate-limit policy."""
    return f"{PREFIX}:rl:{policy}:{{{client}}}"


# Background jobs. All job keys share the `{jobs}` hash tag: one slot, so every job script is
# atomic on Redis Cluster too.
JOBS_GROUP = "workers"
PRIORITIES = ("high", "default", "low")


def _jobs(*parts: str) -> str:
    return ":".join((PREFIX, "{jobs}", *parts))


def job(job_id: str) -> str:
    """Hash holding one job: task, payload, status, attempts, result or last error."""
    return _jobs("job", job_id)


def job_attempts(job_id: str) -> str:
    """List of one job's attempts (JSON: number, worker, start, end, outcome, error)."""
    return _jobs("job", job_id, "attempts")


def job_queue(priority: str) -> str:
    """Stream of jobs ready to run at one priority."""
    return _jobs("queue", priority)


def job_queues() -> list[str]:
    """The queue streams, highest priority first: scripts name a queue by its number here
    (1..3)."""
    return [job_queue(p) for p in PRIORITIES]


def queue_number(priority: str) -> int:
    """A priority's queue as scripts number it (1: high, 2: default, 3: low)."""
    return PRIORITIES.index(priority) + 1


def jobs_delayed() -> str:
    """Sorted set of `priority:job id` -> when to run, in ms (delayed jobs and retries)."""
    return _jobs("delayed")


def jobs_dead() -> str:
    """Stream of jobs that failed their last retry (the dead letters)."""
    return _jobs("dead")


def jobs_finished() -> str:
    """Stream of jobs that completed or failed, one compact entry each, for the recorder."""
    return _jobs("finished")


def jobs_index(status: str) -> str:
    """Sorted set of job id -> when it entered `status`, in ms."""
    return _jobs("status", status)


def job_stats(task: str) -> str:
    """Hash of one task's counters: submitted, completed, failed, retried, lost."""
    return _jobs("stats", task)


def job_recent(task: str) -> str:
    """List of a task's latest completions, `finished ms,run us,wait us`, newest first (capped)."""
    return _jobs("recent", task)


def job_idempotency(key: str) -> str:
    """String holding the job id created under an `Idempotency-Key`."""
    return _jobs("idem", key)


def order_in(fields: dict[str, str]) -> str:
    """The order id a request-stream entry names ('' when none). Entries name it in the field
    `order`; entries queued before that name was chosen say `ride`."""
    return fields.get("order") or fields.get("ride", "")


def request_log() -> str:
    """Stream of API requests, one compact entry each (route template, method, status, latency,
    client, rate-limit decision), flushed in batches by each API process; its own hash tag."""
    return f"{PREFIX}:{{reqlog}}:requests"


# Identity. All auth keys share the `{auth}` hash tag: one slot, so the refresh-token scripts are
# atomic on Redis Cluster too. Secrets appear only as SHA-256 hex digests.


def _auth(*parts: str) -> str:
    return ":".join((PREFIX, "{auth}", *parts))


def refresh_token(digest: str) -> str:
    """Hash of one refresh token (by its SHA-256): family, user, state (live | used)."""
    return _auth("refresh", digest)


def refresh_family(family: str) -> str:
    """Hash of one login's chain of refresh tokens (user, created); gone once revoked."""
    return _auth("family", family)


def user_families(user_id: str) -> str:
    """Sorted set of a user's refresh-token families -> when each expires, in ms."""
    return _auth("user", user_id, "families")


def password_reset(digest: str) -> str:
    """String: the account id a password-reset token (by its SHA-256) may reset, once."""
    return _auth("reset", digest)


def api_key(digest: str) -> str:
    """String `id|role` of a live API key (by its SHA-256), or `-` for one known to be revoked
    or unknown: the per-request check's cache of SQL."""
    return _auth("apikey", digest)


def tracking(city: str) -> str:
    """Pub/Sub channel of the positions of the city's drivers who hold an order, for the
    WebSocket gateways (`driver|order|lat|lng|fix ms`); a channel, not a key."""
    return _city(city, "tracking")


def revoked_subjects() -> str:
    """Sorted set of account ids -> when (epoch s) their access tokens were revoked (disabled,
    password reset): tokens issued until then are refused. Kept one access-token lifetime."""
    return _auth("revoked")
