"""Dispatch analytics from the record, per time bucket, on SQLite and PostgreSQL alike.

Buckets are `[from + i * size, from + (i + 1) * size)`, aligned on `from`. Each event counts in
the bucket of its own time (an order created at 10:59 and accepted at 11:01 is created in one
bucket and accepted in the next):

- orders: created (`created_us`), offered (first offer, `offered_us`), accepted, completed
  (COMPLETED or DELIVERED, `finished_us`), cancelled, no_driver_found;
- offers: made (`offers.offered_us`) and answered (`answered_us`) by outcome;
  acceptance_rate = accepted / (accepted + rejected + lapsed), over offers answered in the
  bucket; withdrawn offers (the customer cancelled) are no driver's decision and are left out;
  null when no offer was answered;
- time_to_first_offer_ms = offered_us - created_us over orders first offered in the bucket;
  time_to_accept_ms = accepted_us - created_us over orders accepted in the bucket; p50 and p95
  are continuous percentiles (linear interpolation between the closest ranks, PostgreSQL's
  `percentile_cont`); on PostgreSQL computed there, on SQLite in Python over the fetched
  durations (the same definition, so both agree);
- mean_pickup_m: mean `pickup_m` of the orders accepted in the bucket;
- offers_per_order: mean `orders.offers` of the orders that ended (completed, delivered,
  cancelled or no driver found) in the bucket;
- requests per route (`method route`) with their p95 latency, and 429s per rate-limit policy,
  from `request_log` by `at_us`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rideflow.errors import Unprocessable
from rideflow.record.db import Record
from rideflow.record.reads import reading
from rideflow.redis import clock

MAX_BUCKETS = 1440
"""At most this many buckets per answer (a day of minutes); more is a 422."""
BUCKET_PATTERN = re.compile(r"^([1-9][0-9]{0,3})([mhd])$")
UNIT_S = {"m": 60, "h": 3600, "d": 86400}
Percentiles = Literal["sql", "python"]


def bucket_seconds(bucket: str) -> int:
    """Seconds in a bucket written `<n>m`, `<n>h` or `<n>d` (1m, 5m, 15m, 1h, 1d...)."""
    match = BUCKET_PATTERN.match(bucket)
    if match is None:
        raise Unprocessable(
            f"{bucket!r} is not a bucket: write <n>m, <n>h or <n>d (1m, 5m, 15m, 1h, 1d)",
            field="bucket",
        )
    return int(match.group(1)) * UNIT_S[match.group(2)]


@dataclass(frozen=True, slots=True)
class Window:
    from_us: int
    to_us: int
    size_us: int

    @property
    def count(self) -> int:
        return max(1, math.ceil((self.to_us - self.from_us) / self.size_us))

    @classmethod
    def of(cls, from_us: int, to_us: int, bucket: str) -> Window:
        """The buckets between two times, or a 422 naming the parameter at fault."""
        size_us = bucket_seconds(bucket) * 1_000_000
        if from_us >= to_us:
            raise Unprocessable("`from` must be before `to`", field="from")
        window = cls(from_us, to_us, size_us)
        if window.count > MAX_BUCKETS:
            raise Unprocessable(
                f"{window.count} buckets of {bucket} between `from` and `to`; at most "
                f"{MAX_BUCKETS}: choose a wider bucket or a shorter range",
                field="bucket",
            )
        return window


class Spread(BaseModel):
    n: int = Field(description="Durations measured")
    p50: float | None
    p95: float | None


class RouteStats(BaseModel):
    requests: int
    p95_ms: float | None


class OrderCounts(BaseModel):
    created: int = 0
    offered: int = 0
    accepted: int = 0
    completed: int = 0
    cancelled: int = 0
    no_driver_found: int = 0


class OfferCounts(BaseModel):
    made: int = 0
    accepted: int = 0
    rejected: int = 0
    lapsed: int = 0
    withdrawn: int = 0
    acceptance_rate: float | None = Field(
        default=None, description="accepted / (accepted + rejected + lapsed) answered here"
    )


class Bucket(BaseModel):
    start: datetime
    end: datetime
    orders: OrderCounts
    offers: OfferCounts
    time_to_first_offer_ms: Spread
    time_to_accept_ms: Spread
    mean_pickup_m: float | None
    offers_per_order: float | None
    requests: dict[str, RouteStats] = Field(description="Per `METHOD /route/{template}`")
    rate_limited: dict[str, int] = Field(description="429s per rate-limit policy")


class Analytics(BaseModel):
    start: datetime = Field(serialization_alias="from")
    to: datetime
    bucket: str
    bucket_s: int
    buckets: list[Bucket]


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The continuous percentile of sorted values (PostgreSQL's `percentile_cont`)."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


def _bucketed(column: str) -> str:
    return f"({column} - :f) / :s"


def _within(column: str) -> str:
    return f"{column} >= :f AND {column} < :t"


ORDER_COUNTS = {
    "created": "created_us",
    "offered": "offered_us",
    "accepted": "accepted_us",
    "completed": "finished_us",
    "cancelled": "cancelled_us",
    "no_driver_found": "no_driver_us",
}
ENDED = "COALESCE(finished_us, cancelled_us, no_driver_us)"
DURATIONS = {
    "time_to_first_offer_ms": ("offered_us", "offered_us - created_us"),
    "time_to_accept_ms": ("accepted_us", "accepted_us - created_us"),
}


async def _rows(session: AsyncSession, sql: str, w: Window) -> Iterable[Any]:
    return await session.execute(text(sql), {"f": w.from_us, "t": w.to_us, "s": w.size_us})


async def _spreads(
    session: AsyncSession, w: Window, table: str, at: str, value: str, keys: str, how: Percentiles
) -> dict[tuple[Any, ...], tuple[int, float | None, float | None]]:
    """(bucket, *keys) -> (n, p50, p95) of `value` over the rows of `table` whose `at` is in
    the window; `keys` are extra grouping columns ('' for none)."""
    group = f"{_bucketed(at)}{', ' + keys if keys else ''}"
    where = f"{_within(at)} AND {value} IS NOT NULL"
    out: dict[tuple[Any, ...], tuple[int, float | None, float | None]] = {}
    if how == "sql":
        sql = (
            f"SELECT {group}, count(*), "
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {value}), "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {value}) "
            f"FROM {table} WHERE {where} GROUP BY {group}"
        )
        for *key, n, p50, p95 in await _rows(session, sql, w):
            out[tuple(key)] = (n, p50, p95)
        return out
    values: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for *key, v in await _rows(session, f"SELECT {group}, {value} FROM {table} WHERE {where}", w):
        values[tuple(key)].append(v)
    for key, found in values.items():
        found.sort()
        out[key] = (len(found), percentile(found, 0.5), percentile(found, 0.95))
    return out


async def analytics(
    record: Record, from_us: int, to_us: int, bucket: str, percentiles: Percentiles | None = None
) -> Analytics:
    """The dispatch figures per bucket (see the module's doc for each definition);
    `percentiles` forces where percentiles are computed (default: in SQL on PostgreSQL, in
    Python on SQLite)."""
    w = Window.of(from_us, to_us, bucket)
    how: Percentiles = percentiles or ("sql" if record.postgres else "python")
    counts = " UNION ALL ".join(
        f"SELECT '{name}', {_bucketed(col)}, count(*) FROM orders WHERE {_within(col)} "
        f"GROUP BY {_bucketed(col)}"
        for name, col in ORDER_COUNTS.items()
    )
    offers = (
        f"SELECT 'made', {_bucketed('offered_us')}, count(*) FROM offers "
        f"WHERE {_within('offered_us')} GROUP BY {_bucketed('offered_us')} UNION ALL "
        f"SELECT outcome, {_bucketed('answered_us')}, count(*) FROM offers "
        f"WHERE {_within('answered_us')} AND outcome IS NOT NULL "
        f"GROUP BY outcome, {_bucketed('answered_us')}"
    )
    means = (
        f"SELECT 'pickup', {_bucketed('accepted_us')}, avg(pickup_m) FROM orders "
        f"WHERE {_within('accepted_us')} AND pickup_m IS NOT NULL "
        f"GROUP BY {_bucketed('accepted_us')} UNION ALL "
        f"SELECT 'offers', {_bucketed(ENDED)}, avg(offers) FROM orders "
        f"WHERE {_within(ENDED)} GROUP BY {_bucketed(ENDED)}"
    )
    limited = (
        f"SELECT {_bucketed('at_us')}, COALESCE(rate_policy, ''), count(*) FROM request_log "
        f"WHERE {_within('at_us')} AND status = 429 "
        f"GROUP BY {_bucketed('at_us')}, COALESCE(rate_policy, '')"
    )
    async with reading(record) as session:
        order_counts = [tuple(r) for r in await _rows(session, counts, w)]
        offer_counts = [tuple(r) for r in await _rows(session, offers, w)]
        mean_rows = [tuple(r) for r in await _rows(session, means, w)]
        limited_rows = [tuple(r) for r in await _rows(session, limited, w)]
        spreads = {
            name: await _spreads(session, w, "orders", at, value, "", how)
            for name, (at, value) in DURATIONS.items()
        }
        routes = await _spreads(
            session, w, "request_log", "at_us", "latency_us", "method, route", how
        )

    buckets: list[dict[str, Any]] = [
        {
            "start": clock.from_us(w.from_us + i * w.size_us),
            "end": clock.from_us(min(w.to_us, w.from_us + (i + 1) * w.size_us)),
            "orders": {},
            "offers": {},
            "requests": {},
            "rate_limited": {},
            "mean_pickup_m": None,
            "offers_per_order": None,
        }
        for i in range(w.count)
    ]
    for name, b, n in order_counts:
        buckets[b]["orders"][name] = n
    for name, b, n in offer_counts:
        buckets[b]["offers"][name] = n
    for name, b, mean in mean_rows:
        field = "mean_pickup_m" if name == "pickup" else "offers_per_order"
        buckets[b][field] = None if mean is None else round(float(mean), 3)
    for b, policy, n in limited_rows:
        buckets[b]["rate_limited"][policy or "none"] = n
    for (b, method, route), (n, _p50, p95) in routes.items():
        buckets[b]["requests"][f"{method} {route}"] = {"requests": n, "p95_ms": _ms(p95)}
    for i, bucket_fields in enumerate(buckets):
        o = bucket_fields["offers"]
        answered = sum(o.get(k, 0) for k in ("accepted", "rejected", "lapsed"))
        o["acceptance_rate"] = round(o.get("accepted", 0) / answered, 4) if answered else None
        for name in DURATIONS:
            n, p50, p95 = spreads[name].get((i,), (0, None, None))
            bucket_fields[name] = {"n": n, "p50": _ms(p50), "p95": _ms(p95)}
    return Analytics(
        start=clock.from_us(w.from_us),
        to=clock.from_us(w.to_us),
        bucket=bucket,
        bucket_s=w.size_us // 1_000_000,
        buckets=[Bucket.model_validate(b) for b in buckets],
    )
