"""The Redis commands an order's assignment ran, in plain words: each event of the order is the
reply of one Lua step, and this lists the step's main commands with the order's real keys (the
dashboard's Redis command console). Pure: events in, lines out; no Redis, no web framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rideflow.redis import keys


@dataclass(frozen=True, slots=True)
class Command:
    """One command as `redis-cli` would show it, and what it does."""

    text: str
    explanation: str


@dataclass(frozen=True, slots=True)
class Step:
    """One Lua step (one atomic call) and the event it appended."""

    status: str
    at: str
    script: str
    summary: str
    commands: list[Command] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Order:
    """What the console needs of the order besides its events."""

    city: str
    order_id: str
    kind: str
    lat: float
    lng: float
    first_radius_m: float
    search_count: int
    window_ms: int


def _emit(o: Order, status: str) -> Command:
    return Command(
        f"XADD {keys.city_events(o.city)} * order {o.order_id} status {status} …",
        f"Appends the transition to {status} to the city's event stream (and, with the same id, "
        "to the order's own stream): live sockets, the recorder and audits read it from there.",
    )


def explain(o: Order, events: list[dict[str, Any]]) -> list[Step]:
    """The steps behind `events` (the order's events, oldest first)."""
    steps: list[Step] = []
    searched = False
    for e in events:
        status, at = str(e.get("status", "")), str(e.get("at", ""))
        driver, offer = e.get("driver_id") or "", e.get("offer_id") or ""
        reason = e.get("reason") or ""
        if status == "QUEUED":
            steps.append(_queued(o, at))
        elif status == "SEARCHING" and not searched:
            searched = True
            steps.append(_begun(o, at))
        elif status == "SEARCHING":
            steps.append(_released(o, at, driver, offer, reason))
        elif status == "OFFERED":
            steps.append(_offered(o, at, driver, offer, e.get("pickup_distance_m")))
        elif status == "ACCEPTED":
            steps.append(_accepted(o, at, driver, offer))
        elif status == "NO_DRIVER_FOUND":
            steps.append(_gave_up(o, at, reason))
        else:
            steps.append(_stepped(o, status, at, driver))
    return steps


def _queued(o: Order, at: str) -> Step:
    order = keys.order(o.city, o.order_id)
    return Step(
        "QUEUED",
        at,
        "order_enqueue.lua",
        "The request is stored and queued for dispatch in one atomic step.",
        [
            Command(
                f"HSET {order} status QUEUED kind {o.kind} pickup {o.lat},{o.lng} …",
                "Stores the order as a hash: its state, pickup and the times of each step.",
            ),
            Command(
                f"XADD {keys.requests(o.city)} * order {o.order_id}",
                "Queues it on the city's request stream, which dispatchers read in arrival order "
                "through a consumer group (an assignment made within the request, like POST "
                f"/v1/delivery/assign, leases it in {keys.retries(o.city)} instead).",
            ),
            _emit(o, "QUEUED"),
        ],
    )


def _begun(o: Order, at: str) -> Step:
    radius = round(o.first_radius_m)
    return Step(
        "SEARCHING",
        at,
        "order_begin.lua",
        "A dispatcher takes the order up and runs the first, smallest search in the same step.",
        [
            Command(
                f"HSET {keys.order(o.city, o.order_id)} status SEARCHING",
                "Marks the order as being searched for, so a second dispatcher leaves it alone.",
            ),
            Command(
                f"GEOSEARCH {keys.pool(o.city)} FROMLONLAT {o.lng} {o.lat} BYRADIUS {radius} m "
                f"ASC COUNT {o.search_count} WITHDIST",
                "Finds the nearest available drivers: the pool is a GEO set holding only drivers "
                "who are online, fresh and free, so no separate availability check is needed. "
                "ASC with COUNT sorts just the nearest few; the radius widens in steps when "
                "nobody is found.",
            ),
            _emit(o, "SEARCHING"),
        ],
    )


def _offered(o: Order, at: str, driver: str, offer: str, distance: Any) -> Step:
    lease = keys.lease(o.city, driver)
    away = f" {float(distance):.0f} m away" if distance is not None else ""
    return Step(
        "OFFERED",
        at,
        "offer_create.lua",
        f"Driver {driver}{away} is reserved and offered the order, atomically.",
        [
            Command(
                f"INCR {keys.fence(o.city)}",
                "Takes the next fencing token: every answer to this offer must present it, so a "
                "late or duplicated answer is refused.",
            ),
            Command(
                f'SET {lease} "<token>|{o.order_id}|{offer}" NX PX {o.window_ms}',
                "The lock: NX sets it only if no other order holds this driver, PX lets it end on "
                "its own after the offer window. A concurrent assignment finds it taken and moves "
                "to its next candidate.",
            ),
            Command(
                f"ZREM {keys.pool(o.city)} {driver}",
                "Takes the driver out of the available pool, so no search returns them now.",
            ),
            Command(
                f"ZADD {keys.offers_due(o.city)} <deadline ms> {offer}",
                "Records the offer's deadline; the dispatchers' sweep lets it lapse there.",
            ),
            _emit(o, "OFFERED"),
        ],
    )


def _released(o: Order, at: str, driver: str, offer: str, reason: str) -> Step:
    return Step(
        "SEARCHING",
        at,
        "offer_release.lua",
        reason or "The offer was released and the order goes back to searching.",
        [
            Command(
                f"DEL {keys.lease(o.city, driver or '<driver>')}",
                "Releases the driver's lock at once instead of waiting for it to expire.",
            ),
            Command(
                f"SADD {keys.excluded(o.city, o.order_id)} {driver}",
                "Never offers this order to this driver again.",
            ),
            Command(
                f"GEOADD {keys.pool(o.city)} <lng> <lat> {driver}",
                "Puts the driver back in the available pool.",
            ),
            Command(
                f"XADD {keys.requests(o.city)} * order {o.order_id}",
                "Queues the order again, so the next driver is offered it at once.",
            ),
            _emit(o, "SEARCHING"),
        ],
    )


def _accepted(o: Order, at: str, driver: str, offer: str) -> Step:
    return Step(
        "ACCEPTED",
        at,
        "offer_accept.lua",
        f"Driver {driver} accepted with the offer's fencing token before its deadline.",
        [
            Command(
                f"HMGET {keys.offer(o.city, offer)} driver token status deadline",
                "Checks the answer: the right driver, the current token, still pending, in time.",
            ),
            Command(
                f"DEL {keys.lease(o.city, driver)}",
                "The lock is no longer needed: the driver's hash now holds the order.",
            ),
            Command(
                f"ZREM {keys.offers_due(o.city)} {offer}",
                "The offer can no longer lapse.",
            ),
            _emit(o, "ACCEPTED"),
        ],
    )


def _gave_up(o: Order, at: str, reason: str) -> Step:
    return Step(
        "NO_DRIVER_FOUND",
        at,
        "order_retry.lua",
        reason or "No driver was found before the order's deadline.",
        [
            Command(
                f"ZREM {keys.retries(o.city)} {o.order_id}",
                "Stops retrying: the order is over.",
            ),
            _emit(o, "NO_DRIVER_FOUND"),
        ],
    )


def _stepped(o: Order, status: str, at: str, driver: str) -> Step:
    commands = [
        Command(
            f"HSET {keys.order(o.city, o.order_id)} status {status}",
            "Moves the order along its state machine (an illegal step is refused with 409).",
        ),
        _emit(o, status),
    ]
    if status in ("COMPLETED", "DELIVERED", "CANCELLED") and driver:
        commands.append(
            Command(
                f"GEOADD {keys.pool(o.city)} <lng> <lat> {driver}",
                "The trip is over: the driver is free and back in the available pool.",
            )
        )
    if status in ("COMPLETED", "DELIVERED") and driver:
        commands.append(
            Command(
                f"ZINCRBY {keys.leaderboard(o.city, '<today>')} 1 {driver}",
                "Counts the trip on today's leaderboard, in the same atomic step.",
            )
        )
    return Step(status, at, "order_transition.lua", f"The order is {status}.", commands)
