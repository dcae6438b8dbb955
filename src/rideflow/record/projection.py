"""Projecting stream entries into the record: order events into `orders`, `order_events`,
`offers` (and a food order's status), request-log entries into `request_log`, finished jobs into
`jobs`, driver samples into `drivers` and `driver_tracks`.

Everything one batch holds is written in the caller's one transaction, and idempotently: an
order event is projected only when its (city, entry id) row was inserted just now (`INSERT ...
ON CONFLICT DO NOTHING RETURNING`, which also waits out a concurrent writer of the same entry on
PostgreSQL), so a replayed batch inserts and counts nothing twice. The same statements serve
SQLite and PostgreSQL through their dialects' `insert`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from rideflow.record import bulk
from rideflow.record.models import (
    Driver,
    DriverTrack,
    FoodOrder,
    JobRecord,
    Offer,
    Order,
    OrderEvent,
    RequestLog,
)

ORDERS: Table = Order.__table__  # type: ignore[assignment]
EVENTS: Table = OrderEvent.__table__  # type: ignore[assignment]
OFFERS: Table = Offer.__table__  # type: ignore[assignment]
FOOD: Table = FoodOrder.__table__  # type: ignore[assignment]
REQUESTS: Table = RequestLog.__table__  # type: ignore[assignment]
JOBS: Table = JobRecord.__table__  # type: ignore[assignment]
DRIVERS: Table = Driver.__table__  # type: ignore[assignment]
TRACKS: Table = DriverTrack.__table__  # type: ignore[assignment]

TIME_COLUMN = {
    "QUEUED": "queued_us",
    "SEARCHING": "searching_us",
    "OFFERED": "offered_us",
    "ACCEPTED": "accepted_us",
    "DRIVER_ARRIVING": "arriving_us",
    "PICKED_UP": "picked_up_us",
    "COMPLETED": "finished_us",
    "DELIVERED": "finished_us",
    "CANCELLED": "cancelled_us",
    "NO_DRIVER_FOUND": "no_driver_us",
}
EVENT_COLUMNS = ("city", "entry_id", "order_id", "status", "at_us", "driver_id", "offer_id", "data")
OFFER_COLUMNS = tuple(c.name for c in OFFERS.columns)
OFFER_MADE = ("driver_id", "pickup_m", "offered_us")
"""What an OFFERED event knows of its offer (a settling event recorded first knows the rest)."""
OFFER_SETTLED = ("outcome", "answered_us")


def _excluded(names: Iterable[str]) -> str:
    return ", ".join(f"{n} = EXCLUDED.{n}" for n in names)


# PostgreSQL: the batch's rows as arrays (see `bulk`).
PG_ORDERS = bulk.Rows(ORDERS, [c.name for c in ORDERS.columns])
PG_ORDERS_INSERT, PG_ORDERS_UPDATE = PG_ORDERS.insert(), PG_ORDERS.update()
PG_EVENTS = bulk.Rows(EVENTS, EVENT_COLUMNS)
PG_EVENTS_INSERT = PG_EVENTS.insert(
    "ON CONFLICT (city, entry_id) DO NOTHING RETURNING city, entry_id"
)
PG_OFFERS = bulk.Rows(OFFERS, OFFER_COLUMNS)
PG_OFFERS_MADE = PG_OFFERS.insert(f"ON CONFLICT (id) DO UPDATE SET {_excluded(OFFER_MADE)}")
PG_OFFERS_SETTLED = PG_OFFERS.insert(f"ON CONFLICT (id) DO UPDATE SET {_excluded(OFFER_SETTLED)}")

ORDER_LOCKS = 0x5246  # 'RF': the advisory-lock class of orders being recorded (PostgreSQL)
PG_LOCK_ORDERS = text(
    "SELECT count(pg_advisory_xact_lock(:class, k)) FROM (SELECT DISTINCT hashtext(id) AS k"
    " FROM unnest(CAST(:ids AS text[])) AS id ORDER BY k) AS keys"
)
"""Recorders side by side (`rideflow up --recorders N`): a batch waits for any other batch
writing one of its orders. Row locks (`FOR UPDATE`) cannot do it for an order neither has
created yet (both would insert it; one failed on the key); the locks are taken in one order,
so two batches never wait for each other."""

FINAL = frozenset(("COMPLETED", "DELIVERED", "CANCELLED", "NO_DRIVER_FOUND"))
OFFER_OUTCOME = {"REJECTED": "rejected", "EXPIRED": "lapsed"}
"""A SEARCHING event's `outcome` (the offer it follows) as the offers table names it."""
EVENT_FIELDS = frozenset(("order", "status", "at", "driver", "offer"))
"""Fields with columns of their own in `order_events`; the rest go to its `data`."""
ORDER_FIELDS = {
    "kind": "kind",
    "customer": "customer_id",
    "strategy": "strategy",
    "restaurant": "restaurant_id",
    "ext_order": "ext_order",
}
"""QUEUED event fields (the order's own) -> `orders` columns; `pickup` and `dropoff` are split."""


@dataclass(frozen=True, slots=True)
class Event:
    """One order event read from a city's event stream."""

    city: str
    entry_id: str
    fields: dict[str, str]


def dialect_insert(conn: AsyncConnection, table: Table) -> Any:
    """`INSERT` with `ON CONFLICT` support for the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _point(text: str | None) -> tuple[float | None, float | None]:
    if not text:
        return None, None
    lat, _, lng = text.partition(",")
    try:
        return float(lat), float(lng)
    except ValueError:
        return None, None


def to_float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _event_row(e: Event) -> dict[str, Any]:
    f = e.fields
    data = {k: v for k, v in f.items() if k not in EVENT_FIELDS and v != ""}
    return {
        "city": e.city,
        "entry_id": e.entry_id,
        "order_id": f.get("order", ""),
        "status": f.get("status", ""),
        "at_us": int(f.get("at") or 0),
        "driver_id": f.get("driver") or None,
        "offer_id": f.get("offer") or None,
        "data": data or None,
    }


def _new_order(e: Event, at: int) -> dict[str, Any]:
    """An order's row from its first event (QUEUED carries the order's fields)."""
    f = e.fields
    row: dict[str, Any] = {c.name: None for c in ORDERS.columns}
    pickup, dropoff = _point(f.get("pickup")), _point(f.get("dropoff"))
    row.update(
        id=f["order"],
        city=e.city,
        kind=f.get("kind") or ("delivery" if f.get("restaurant") else "unknown"),
        status="QUEUED",
        offers=0,
        created_us=at,
        updated_us=at,
        pickup_lat=pickup[0],
        pickup_lng=pickup[1],
        dropoff_lat=dropoff[0],
        dropoff_lng=dropoff[1],
    )
    for name, column in ORDER_FIELDS.items():
        if f.get(name):
            row[column] = f[name]
    return row


RANK = {"QUEUED": 0, "SEARCHING": 1, "OFFERED": 2, "ACCEPTED": 3, "DRIVER_ARRIVING": 4}
RANK |= {"PICKED_UP": 5} | dict.fromkeys(FINAL, 6)
"""Lifecycle order, to settle two events of the same microsecond (QUEUED and SEARCHING of a
delivery assigned in its request)."""


def _apply(row: dict[str, Any], f: dict[str, str], at: int) -> None:
    """One event's effect on its order's row. Events may come out of order (entries a killed
    recorder held are reclaimed after newer ones were recorded): the status and the driver
    follows the latest event; each time column keeps its own status's time."""
    status = f.get("status", "")
    updated = int(row.get("updated_us") or 0)
    latest = at > updated or (
        at == updated and RANK.get(status, 0) >= RANK.get(row.get("status") or "", 0)
    )
    column = TIME_COLUMN.get(status)
    if column:
        old = row.get(column)
        # The first offer's time; the latest time of every other status.
        row[column] = at if old is None else (min(old, at) if status == "OFFERED" else max(old, at))
    if status == "OFFERED":
        row["offers"] = int(row.get("offers") or 0) + 1
    if status in FINAL:
        row["outcome"] = status
    if latest:
        row["status"], row["updated_us"] = status, at
    # The driver (and their distance) of the latest offer or acceptance, and the latest reason,
    # whatever order they are recorded in: when each was set is kept in `extra`.
    extra = dict(row.get("extra") or {})
    if status in ("OFFERED", "ACCEPTED") and at >= int(extra.get("driver_at", 0)):
        extra["driver_at"] = at
        row["driver_id"] = f.get("driver") or row.get("driver_id")
        if f.get("pickup_m"):
            row["pickup_m"] = to_float(f["pickup_m"])
    if f.get("reason") and at >= int(extra.get("reason_at", 0)):
        extra["reason_at"] = at
        row["reason"] = f["reason"]
    row["extra"] = extra or None


def _fill(row: dict[str, Any], queued: dict[str, Any]) -> None:
    """A row made from a later event first (its QUEUED came late): the order's own fields."""
    for k, v in queued.items():
        if row.get(k) is None or (k == "kind" and row[k] == "unknown"):
            row[k] = v
    row["created_us"] = min(int(row["created_us"]), int(queued["created_us"]))


def _offer_change(f: dict[str, str], at: int) -> tuple[str, str, int] | None:
    """(offer id, outcome, answered us) when the event settles an offer."""
    offer, status = f.get("offer") or "", f.get("status", "")
    if not offer:
        return None
    if status == "ACCEPTED":
        return offer, "accepted", at
    if status == "SEARCHING" and f.get("outcome") in OFFER_OUTCOME:
        return offer, OFFER_OUTCOME[f["outcome"]], at
    if status == "CANCELLED":
        return offer, "withdrawn", at
    return None


async def project_events(conn: AsyncConnection, events: Sequence[Event]) -> Counter[str]:
    """Record a batch of order events (in stream order), skipping those already recorded."""
    counts: Counter[str] = Counter()
    if not events:
        return counts
    rows = [_event_row(e) for e in events]
    if conn.dialect.name == "postgresql":
        result = await conn.execute(PG_EVENTS_INSERT, PG_EVENTS.params(rows))
    else:
        insert = dialect_insert(conn, EVENTS).on_conflict_do_nothing(
            index_elements=["city", "entry_id"]
        )
        result = await conn.execute(insert.returning(EVENTS.c.city, EVENTS.c.entry_id), rows)
    fresh = {(r.city, r.entry_id) for r in result}
    todo = [e for e in events if (e.city, e.entry_id) in fresh and e.fields.get("order")]
    counts["events"] += len(fresh)
    counts["replayed"] += len(events) - len(fresh)
    if not todo:
        return counts
    ids = sorted({e.fields["order"] for e in todo})
    if conn.dialect.name == "postgresql":
        await conn.execute(PG_LOCK_ORDERS, {"class": ORDER_LOCKS, "ids": ids})
    # The ids inline, not as parameters: PostgreSQL hashes a constant IN list, and compares
    # each row against every parameter of a parameter list (a batch's order ids from a
    # sequential scan, which it picks while a young table has no statistics, took 70 ms).
    query = select(ORDERS).where(
        ORDERS.c.id.in_(bindparam("ids", ids, expanding=True, literal_execute=True))
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    existing = {r.id: r._asdict() for r in await conn.execute(query)}
    created: dict[str, dict[str, Any]] = {}
    new_offers: dict[str, dict[str, Any]] = {}
    settled: dict[str, dict[str, Any]] = {}
    for e in todo:
        f, at = e.fields, int(e.fields.get("at") or 0)
        order_id = f["order"]
        row = existing.get(order_id) or created.get(order_id)
        if row is None:
            row = created[order_id] = _new_order(e, at)
        elif f.get("status") == "QUEUED":
            _fill(row, _new_order(e, at))
        _apply(row, f, at)
        if f.get("status") == "OFFERED" and f.get("offer"):
            new_offers[f["offer"]] = {
                "id": f["offer"],
                "city": e.city,
                "order_id": order_id,
                "driver_id": f.get("driver") or "",
                "pickup_m": to_float(f.get("pickup_m")),
                "offered_us": at,
                "answered_us": None,
                "outcome": None,
            }
        change = _offer_change(f, at)
        if change:
            offer_id, outcome, answered = change
            settled[offer_id] = {
                "id": offer_id,
                "city": e.city,
                "order_id": order_id,
                "driver_id": f.get("driver") or "",
                "pickup_m": None,
                "offered_us": answered,  # until its OFFERED event says (if it comes later)
                "answered_us": answered,
                "outcome": outcome,
            }
    await _write_orders(conn, created, existing, ids)
    await _write_offers(conn, list(new_offers.values()), list(settled.values()))
    deliveries = [r for r in (*created.values(), *existing.values()) if r["kind"] == "delivery"]
    if deliveries:
        await conn.execute(
            update(FOOD)
            .where(FOOD.c.id == bindparam("f_id"))
            .values(status=bindparam("f_status"), updated_us=bindparam("f_at")),
            [
                {"f_id": r["id"], "f_status": r["status"], "f_at": r["updated_us"]}
                for r in deliveries
            ],
        )
    counts["orders_created"] += len(created)
    counts["offers"] += len(new_offers)
    return counts


async def _write_offers(
    conn: AsyncConnection, offered: list[dict[str, Any]], settled: list[dict[str, Any]]
) -> None:
    """Offers made, then offers settled, each an upsert: an offer's settling event may be
    recorded before its OFFERED event (reclaimed late), and either fills in what it knows."""
    if conn.dialect.name == "postgresql":
        for statement, rows in ((PG_OFFERS_MADE, offered), (PG_OFFERS_SETTLED, settled)):
            if rows:
                await conn.execute(statement, PG_OFFERS.params(rows))
        return
    for names, rows in ((OFFER_MADE, offered), (OFFER_SETTLED, settled)):
        if rows:
            insert = dialect_insert(conn, OFFERS)
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["id"], set_={c: insert.excluded[c] for c in names}
                ),
                rows,
            )


async def _write_orders(
    conn: AsyncConnection,
    created: dict[str, dict[str, Any]],
    existing: dict[str, dict[str, Any]],
    touched: Iterable[str],
) -> None:
    postgres = conn.dialect.name == "postgresql"
    if created and postgres:
        await conn.execute(PG_ORDERS_INSERT, PG_ORDERS.params(list(created.values())))
    elif created:
        await conn.execute(ORDERS.insert(), list(created.values()))
    changed = [existing[i] for i in touched if i in existing]
    if changed and postgres:
        await conn.execute(PG_ORDERS_UPDATE, PG_ORDERS.params(changed))
    elif changed:
        columns = [c.name for c in ORDERS.columns if c.name != "id"]
        await conn.execute(
            update(ORDERS)
            .where(ORDERS.c.id == bindparam("b_id"))
            .values({c: bindparam(f"b_{c}") for c in columns}),
            [{f"b_{k}": v for k, v in row.items()} for row in changed],
        )


def request_row(entry_id: str, f: dict[str, str]) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "at_us": int(f.get("at") or 0),
        "method": f.get("method", "")[:8],
        "route": f.get("route", "")[:200],
        "status": int(f.get("status") or 0),
        "latency_us": int(f.get("latency_us") or 0),
        "client": f.get("client") or None,
        "rate_policy": f.get("policy") or None,
        "rate_decision": f.get("decision") or None,
    }


async def project_requests(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """Record request-log entries (an entry id already recorded is skipped)."""
    if not rows:
        return 0
    insert = dialect_insert(conn, REQUESTS).on_conflict_do_nothing(index_elements=["entry_id"])
    result = await conn.execute(insert.returning(REQUESTS.c.entry_id), rows)
    return len(result.all())


def _ms_to_us(text: str | None) -> int | None:
    return int(float(text)) * 1000 if text else None


def job_row(f: dict[str, str]) -> dict[str, Any]:
    return {
        "id": f["id"],
        "task": f.get("task", ""),
        "status": f.get("status", ""),
        "priority": f.get("priority") or None,
        "attempts": int(f.get("attempts") or 0),
        "retries": int(f.get("retries") or 0),
        "created_us": _ms_to_us(f.get("created")),
        "started_us": _ms_to_us(f.get("started")),
        "finished_us": _ms_to_us(f.get("finished")) or 0,
        "payload": None,
        "result": f.get("result") or None,
        "error": f.get("error") or None,
    }


async def project_jobs(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """Record finished jobs (upserted by id: a job redriven and finished again is updated)."""
    if not rows:
        return 0
    latest = {r["id"]: r for r in rows}
    insert = dialect_insert(conn, JOBS)
    upsert = insert.on_conflict_do_update(
        index_elements=["id"],
        set_={c: insert.excluded[c] for c in latest[next(iter(latest))] if c != "id"},
    )
    await conn.execute(upsert, list(latest.values()))
    return len(latest)


async def record_drivers(
    conn: AsyncConnection, drivers: list[dict[str, Any]], tracks: list[dict[str, Any]]
) -> None:
    """Upsert drivers' profiles and last positions; one track row per driver per sample (a
    replayed sample inserts nothing)."""
    if drivers:
        insert = dialect_insert(conn, DRIVERS)
        columns = [c for c in drivers[0] if c not in ("city", "id")]
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["city", "id"], set_={c: insert.excluded[c] for c in columns}
            ),
            drivers,
        )
    if tracks:
        insert = dialect_insert(conn, TRACKS).on_conflict_do_nothing(
            index_elements=["city", "driver_id", "at_us"]
        )
        await conn.execute(insert, tracks)
