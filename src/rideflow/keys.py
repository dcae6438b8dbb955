"""Every Redis key RideFlow uses. City keys carry the `{city}` hash tag so that one city's keys
share a Redis Cluster slot and multi-key Lua scripts stay atomic there."""

PREFIX = "rf"
DISPATCH_GROUP = "dispatchers"
DRIVER_DIRECTORY = f"{PREFIX}:drivers"


def _city(city: str, *parts: str) -> str:
    return ":".join((PREFIX, "{" + city + "}", *parts))


def requests(city: str) -> str:
    """Stream of ride requests waiting for dispatch, in arrival order."""
    return _city(city, "requests")


def dead_requests(city: str) -> str:
    """Stream of request entries that failed to be handled `MAX_DELIVERIES` times."""
    return _city(city, "requests", "dead")


def pool(city: str) -> str:
    """GEO set of available drivers (online, fresh, holding no ride)."""
    return _city(city, "pool")


def seen(city: str) -> str:
    """Sorted set of driver id -> last position time in ms (GEO sets cannot expire members)."""
    return _city(city, "seen")


def retries(city: str) -> str:
    """Sorted set of ride id -> when to look for a driver again, in ms."""
    return _city(city, "retry")


def ride(city: str, ride_id: str) -> str:
    """Hash holding one ride's state and transition times."""
    return _city(city, "ride", ride_id)


def ride_events(city: str, ride_id: str) -> str:
    """Stream of one ride's transitions (capped), for history and for resuming live updates."""
    return _city(city, "ride", ride_id, "events")


def driver(city: str, driver_id: str) -> str:
    """Hash holding one driver's profile, status, position and current ride."""
    return _city(city, "driver", driver_id)


def idempotency(city: str, scope: str, key: str) -> str:
    """String holding the id created under an `Idempotency-Key`."""
    return _city(city, "idem", scope, key)


def rate_limit(policy: str, client: str) -> str:
    """State of one client under one rate-limit policy."""
    return f"{PREFIX}:rl:{policy}:{{{client}}}"
