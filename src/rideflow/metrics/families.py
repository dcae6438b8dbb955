"""Every metric family RideFlow exports, and the calls that record into them.

Families are module globals, as prometheus-client has them: made once at import, in every process
that records anything. Recording is in process (a lock and an add, or a write into this process's
memory-mapped file in multi-process mode): nothing here does I/O on a request's behalf. Names
follow Prometheus practice: a `rideflow_` prefix, the unit in the name, `_total` on counters.

Label values are bounded: route templates, never paths; statuses, policies, stages, outcomes,
tasks and streams from fixed sets; a method no route knows is counted as `OTHER`.
"""

from __future__ import annotations

import atexit
import os
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, multiprocess

from rideflow.metrics.directory import multiprocess_dir

# No `_created` series: multi-process mode has none, and a process alone would export one per
# label set of every counter and histogram (a fifth of the text) that no panel reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)
"""Nine: a scrape's time grows with its lines, and each label set of the HTTP histogram (method,
route, status) has a line per bucket. Fine around the hot path's 10 ms target, coarse beyond."""
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
JOB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

REQUEST_SECONDS = Histogram(
    "rideflow_http_request_duration_seconds",
    "HTTP requests by method, route template and status, timed from the first middleware",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)
RATE_LIMIT_DECISIONS = Counter(
    "rideflow_rate_limit_decisions_total",
    "Rate-limit checks by policy and decision (allow or deny)",
    ["policy", "decision"],
)
DISPATCH_STAGE_SECONDS = Histogram(
    "rideflow_dispatch_stage_duration_seconds",
    "Time an order spent in a dispatch stage, on Redis' clock: queued_to_searching (waiting for "
    "a dispatcher), searching_to_offered (from its latest search start to an offer), "
    "offered_to_accepted (the accepted offer, made to answered)",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
OFFERS = Counter(
    "rideflow_offers_total",
    "Offers by outcome: offered (made), accepted, rejected, lapsed, withdrawn (the order "
    "cancelled), lost (its key vanished; repaired by the sweep)",
    ["outcome"],
)
STREAM_LENGTH = Gauge(
    "rideflow_stream_length_entries",
    "Entries in a stream (XLEN), sampled every few seconds by the recorder",
    ["stream", "city"],
    multiprocess_mode="livemostrecent",
)
STREAM_PENDING = Gauge(
    "rideflow_stream_pending_entries",
    "Entries a consumer group has read and not acknowledged (XINFO GROUPS pending)",
    ["stream", "city", "group"],
    multiprocess_mode="livemostrecent",
)
STREAM_LAG = Gauge(
    "rideflow_stream_lag_entries",
    "Entries a consumer group has not read yet (XINFO GROUPS lag)",
    ["stream", "city", "group"],
    multiprocess_mode="livemostrecent",
)
JOBS = Counter(
    "rideflow_jobs_total",
    "Job attempts by task and status: started, then completed, retried, failed (out of "
    "attempts) or stale (taken over by another worker; result dropped)",
    ["task", "status"],
)
JOB_RUN_SECONDS = Histogram(
    "rideflow_job_run_duration_seconds",
    "Time a job's handler ran, by task and outcome (ok, error, timeout)",
    ["task", "outcome"],
    buckets=JOB_BUCKETS,
)
RECORDER_BACKLOG = Gauge(
    "rideflow_recorder_backlog_entries",
    "Entries the recorder has not committed to SQL yet (pending plus unread), as /readyz says",
    multiprocess_mode="livemax",
)
RECORDER_LAG_SECONDS = Histogram(
    "rideflow_recorder_lag_seconds",
    "Age of a committed batch's oldest entry at commit: stream entry time (Redis) to the "
    "transaction's commit (the recorder's clock)",
    buckets=LAG_BUCKETS,
)
WS_CONNECTIONS = Gauge(
    "rideflow_websocket_connections",
    "Open WebSocket connections by role",
    ["role"],
    multiprocess_mode="livesum",
)
WS_SLOW_CLOSED = Counter(
    "rideflow_websocket_slow_consumers_closed_total",
    "Sockets closed with 1013 because their client fell behind (send queue full)",
)
REDIS_ERRORS = Counter(
    "rideflow_redis_errors_total",
    "Redis errors that failed a request (503 or 500) or a worker's step, by exception class",
    ["error"],
)
SQL_ERRORS = Counter(
    "rideflow_sql_errors_total",
    "Database errors that failed a request (503 or 500) or a recorder's batch, by exception class",
    ["error"],
)

FAMILIES = (
    REQUEST_SECONDS,
    RATE_LIMIT_DECISIONS,
    DISPATCH_STAGE_SECONDS,
    OFFERS,
    STREAM_LENGTH,
    STREAM_PENDING,
    STREAM_LAG,
    JOBS,
    JOB_RUN_SECONDS,
    RECORDER_BACKLOG,
    RECORDER_LAG_SECONDS,
    WS_CONNECTIONS,
    WS_SLOW_CLOSED,
    REDIS_ERRORS,
    SQL_ERRORS,
)
"""What RideFlow exports (the Grafana dashboard's test checks each is on a panel)."""

Child = TypeVar("Child")


class Children(Generic[Child]):
    """A family's children by label values, each looked up once: `labels()` validates and
    locks on every call, which the hot paths need not pay again."""

    def __init__(self, family: Counter | Gauge | Histogram) -> None:
        self.family = family
        self.known: dict[tuple[str, ...], Child] = {}

    def __call__(self, *values: str) -> Child:
        if values not in self.known:
            self.known[values] = self.family.labels(*values)  # type: ignore[assignment]
        return self.known[values]


METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
_requests: dict[tuple[str, str, int], Histogram] = {}
_decisions: Children[Counter] = Children(RATE_LIMIT_DECISIONS)
_stages: Children[Histogram] = Children(DISPATCH_STAGE_SECONDS)
_offers: Children[Counter] = Children(OFFERS)
_jobs: Children[Counter] = Children(JOBS)
_job_runs: Children[Histogram] = Children(JOB_RUN_SECONDS)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """One HTTP request answered (the request log's middleware calls it with the template it
    already found)."""
    if method not in METHODS:
        method = "OTHER"
    key = (method, route, status)
    child = _requests.get(key)
    if child is None:
        child = _requests[key] = REQUEST_SECONDS.labels(method, route, str(status))
    child.observe(seconds)


def rate_decision(policy: str, allowed: bool) -> None:
    _decisions(policy, "allow" if allowed else "deny").inc()


def stage(name: str, since_us: str, at_us: str) -> None:
    """An order left stage `name`: entered at `since_us`, left at `at_us` (epoch us on Redis'
    clock, as the scripts stamp them). A stamp the script did not have ('') records nothing."""
    if since_us and at_us:
        stage_lasted(name, int(at_us) - int(since_us))


def stage_lasted(name: str, us: int) -> None:
    """An order spent `us` microseconds in stage `name`."""
    _stages(name).observe(max(0, us) / 1_000_000)


def offer(outcome: str) -> None:
    _offers(outcome).inc()


JOB_STATUS_NAMES = {"pending": "retried"}
"""A finished attempt's status as `rideflow_jobs_total` names it: pending again is a retry."""


def job(task: str, status: str) -> None:
    _jobs(task, status).inc()


def job_ran(task: str, outcome: str, status: str, run_us: int) -> None:
    """An attempt recorded: its run time by outcome (ok, error, timeout), its count by the
    status it left the job in."""
    _job_runs(task, outcome).observe(run_us / 1_000_000)
    _jobs(task, JOB_STATUS_NAMES.get(status, status)).inc()


def redis_error(exc: BaseException) -> None:
    REDIS_ERRORS.labels(type(exc).__name__).inc()


def sql_error(exc: BaseException) -> None:
    SQL_ERRORS.labels(type(exc).__name__).inc()


def process_ended() -> None:
    """A process leaving takes its live gauges (sockets open, stream samples) with it; its
    counters stay in the directory, summed into every scrape, as counters must. The API calls
    it at the end of its lifespan: uvicorn ends by re-raising the SIGTERM it caught, which
    skips `atexit`."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]


if multiprocess_dir() is not None:
    # Registered where the families are made: every process that records anything (dispatchers,
    # job workers, the recorder, the API) passes here and marks itself on a normal exit.
    atexit.register(process_ended)
