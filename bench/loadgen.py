"""A small, low-overhead HTTP/1.1 keep-alive load generator for loopback benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mode = Literal["closed", "open"]
RequestSpec = tuple[str, str, bytes, dict[str, str]]
MakeRequest = Callable[[int], RequestSpec]
OnResponse = Callable[[int, int, bytes], None]
"""Called with (request index, status, body) for every measured response, when bodies are kept."""

ALLOWED_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50_ms", 50.0),
    ("p90_ms", 90.0),
    ("p99_ms", 99.0),
    ("p999_ms", 99.9),
)

_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close")
_CONTENT_LENGTH = b"\r\ncontent-length:"
_TRANSFER_ENCODING = b"\r\ntransfer-encoding:"
_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
# Headers larger than this are certainly a bug in the server under test, not a benchmark load.
_READ_LIMIT = 1 << 20


class ProtocolError(Exception):
    """The server sent something that is not a well-formed HTTP/1.x response."""


@dataclass(slots=True)
class LoadResult:
    """Counters and latency summary of one run, post-warmup requests only."""

    mode: str
    connections: int
    offered_rate: float | None
    duration_s: float
    warmup_s: float
    # sent == completed + errors + timeouts: errors are connect/reset/malformed-response
    # failures, timeouts were still in flight when the grace period ran out, and dropped
    # counts open-mode slots inside the window that were never sent at all.
    sent: int
    completed: int
    errors: int
    timeouts: int
    dropped: int
    status_counts: dict[int, int]
    elapsed_s: float
    throughput: float
    min_ms: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without the raw latency samples."""
        out = asdict(self)
        del out["latencies_ms"]
        # JSON object keys must be strings; sorted so two runs diff cleanly.
        out["status_counts"] = {str(k): v for k, v in sorted(self.status_counts.items())}
        return out

    @property
    def ok(self) -> int:
        """Responses with a 2xx status."""
        return sum(n for code, n in self.status_counts.items() if 200 <= code < 300)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence; 0.0 when it is empty."""
    n = len(sorted_values)
    if n == 0:
        return 0.0
    rank = math.ceil(pct / 100.0 * n)
    return sorted_values[min(max(rank, 1), n) - 1]


def check_host(host: str) -> str:
    """The address to connect to for host, refusing anything that is not loopback."""
    if host not in ALLOWED_HOSTS:
        raise ValueError(f"loadgen only targets loopback (127.0.0.1, localhost, ::1), not {host!r}")
    # Resolving "localhost" ourselves avoids a resolver round-trip and an IPv6/IPv4 surprise.
    return "127.0.0.1" if host == "localhost" else host


class RequestEncoder:
    """Turns make_request tuples into wire bytes, reusing the head while it does not change."""

    __slots__ = ("_headers", "_host_header", "_method", "_path", "_prefix", "_want_length")

    def __init__(self, host: str, port: int) -> None:
        """Remember the Host header value for host:port."""
        shown = f"[{host}]" if ":" in host else host
        self._host_header = f"{shown}:{port}"
        self._method = ""
        self._path = ""
        self._headers: dict[str, str] | None = None
        self._prefix = b""
        self._want_length = False

    def encode(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The full request bytes for one request."""
        # Generators usually repeat method, path and headers, so cache the head and only
        # rebuild it on change; dict equality of a few short strings is cheaper than joining.
        if method != self._method or path != self._path or headers != self._headers:
            self._rebuild(method, path, headers)
        if body or self._want_length:
            return b"%bContent-Length: %d\r\n\r\n%b" % (self._prefix, len(body), body)
        return self._prefix + _CRLF

    def _rebuild(self, method: str, path: str, headers: dict[str, str]) -> None:
        """Validate and encode the request line and headers."""
        if not method.isalpha() or not path.startswith("/") or any(c in path for c in " \r\n"):
            raise ValueError(f"bad request line: {method!r} {path!r}")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in headers.items():
            if any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n"):
                raise ValueError(f"bad header: {name!r}: {value!r}")
            if name.lower() in ("host", "content-length", "transfer-encoding"):
                raise ValueError(f"header {name!r} is set by the load generator")
            lines.append(f"{name}: {value}")
        self._prefix = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._method, self._path, self._headers = method, path, dict(headers)
        # Servers may answer 411 to a bodyless POST without Content-Length, so always send it.
        self._want_length = method.upper() not in _BODYLESS_METHODS


async def read_response(
    reader: asyncio.StreamReader, head_request: bool, keep_body: bool = False
) -> tuple[int, bool, bytes]:
    """Read one response; return (status, connection reusable, body), the body empty unless
    `keep_body` (and not chunked)."""
    while True:
        block = await reader.readuntil(_HEAD_END)
        if block[:7] != b"HTTP/1." or len(block) < 12:
            raise ProtocolError(f"bad status line: {block[:40]!r}")
        status = int(block[9:12])
        # Interim 1xx responses precede the real one; 101 would switch protocols, unsupported.
        if 100 <= status < 200 and status != 101:
            continue
        break
    lower = block.lower()
    # HTTP/1.0 closes by default unless told otherwise; treat it as not reusable.
    keep = block[7:8] == b"1" and _CONNECTION_CLOSE.search(lower) is None
    if head_request or status in (204, 304) or status < 200:
        return status, keep, b""
    at = lower.find(_CONTENT_LENGTH)
    if at >= 0:
        start = at + len(_CONTENT_LENGTH)
        length = int(lower[start : lower.index(_CRLF, start)])
        body = await reader.readexactly(length) if length else b""
        return status, keep, body if keep_body else b""
    at = lower.find(_TRANSFER_ENCODING)
    if at >= 0 and b"chunked" in lower[at : lower.index(_CRLF, at + 2)]:
        await _read_chunked(reader)
        return status, keep, b""
    # No framing: the body runs to EOF, so the connection cannot be reused.
    body = await reader.read()
    return status, False, body if keep_body else b""


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    """Consume a chunked body including its trailers."""
    while True:
        line = await reader.readuntil(_CRLF)
        size = int(line.split(b";", 1)[0], 16)
        if size == 0:
            break
        await reader.readexactly(size + 2)
    while await reader.readuntil(_CRLF) != _CRLF:
        pass


class _Run:
    """Shared state of one run; workers are coroutines over this object."""

    def __init__(
        self,
        host: str,
        port: int,
        make_request: MakeRequest,
        *,
        mode: Mode,
        connections: int,
        duration_s: float,
        max_requests: int,
        rate: float | None,
        warmup_s: float,
        connect_timeout_s: float,
        on_response: OnResponse | None = None,
    ) -> None:
        """Validate parameters and zero the counters."""
        if mode not in ("closed", "open"):
            raise ValueError(f"mode must be 'closed' or 'open', not {mode!r}")
        if connections < 1 or max_requests < 1 or duration_s <= 0 or warmup_s < 0:
            raise ValueError("need connections >= 1, max_requests >= 1, duration_s > 0")
        if mode == "open" and (rate is None or rate <= 0):
            raise ValueError("open mode needs rate > 0")
        self.addr = check_host(host)
        self.port = port
        self.make_request = make_request
        self.mode: Mode = mode
        self.connections = connections
        self.duration_s = duration_s
        self.max_requests = max_requests
        self.rate = rate if mode == "open" else None
        self.warmup_s = warmup_s
        self.connect_timeout_s = connect_timeout_s
        self.on_response = on_response
        self.encoder = RequestEncoder(self.addr, port)
        self.next_index = 0
        self.sent = 0
        self.completed = 0
        self.errors = 0
        self.timeouts = 0
        self.status_counts: dict[int, int] = {}
        self.latencies: list[float] = []
        self.start = 0.0
        self.measure_from = 0.0
        self.deadline = 0.0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open one keep-alive connection with Nagle disabled."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.addr, self.port, limit=_READ_LIMIT),
            self.connect_timeout_s,
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Small request/response pairs would otherwise wait on delayed ACKs.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    def first_slot_at(self, t: float) -> int:
        """The first open-mode slot index scheduled at or after perf_counter time t."""
        interval = 1.0 / self.rate if self.rate else 0.0
        i = max(0, math.ceil((t - self.start) / interval))
        # Nudge by one to agree exactly with the worker's float expression.
        while i > 0 and self.start + (i - 1) * interval >= t:
            i -= 1
        while self.start + i * interval < t:
            i += 1
        return i

    # The hot loop stays in one function on purpose: a helper call per request costs CPU
    # that this 2-core box would otherwise give to the server under test.
    async def worker(  # noqa: PLR0915
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, slot: list[bool]
    ) -> None:
        """Send requests one at a time until the deadline or the request budget is reached."""
        # Locals are markedly faster than attribute lookups in this hot loop.
        perf = time.perf_counter
        make_request = self.make_request
        encode = self.encoder.encode
        latencies = self.latencies
        status_counts = self.status_counts
        measure_from = self.measure_from
        deadline = self.deadline
        max_requests = self.max_requests
        open_mode = self.mode == "open"
        interval = 1.0 / self.rate if self.rate else 0.0
        start = self.start
        on_response = self.on_response
        keep_body = on_response is not None
        backoff = 0.01
        try:
            while True:
                i = self.next_index
                if i >= max_requests:
                    return
                if open_mode:
                    # The schedule is fixed from start, so a slow server cannot slow the offered
                    # load down; latency is counted from this time (no coordinated omission).
                    t_start = start + i * interval
                    if t_start >= deadline:
                        return
                    self.next_index = i + 1
                    delay = t_start - perf()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    t_start = perf()
                    if t_start >= deadline:
                        return
                    self.next_index = i + 1
                measured = t_start >= measure_from
                method, path, body, headers = make_request(i)
                data = encode(method, path, body, headers)
                if measured:
                    self.sent += 1
                # slot[0] marks "a measured request is in flight" for the hard-stop accounting.
                slot[0] = measured
                try:
                    if conn is None:
                        conn = await self.connect()
                        backoff = 0.01
                    reader, writer = conn
                    t_send = perf()
                    # Closed mode times the request alone. Open mode counts from the schedule,
                    # unless the timer woke us early (uvloop rounds sleeps to whole ms), in
                    # which case the real send time is the honest start.
                    if not open_mode or t_send < t_start:
                        t_start = t_send
                    writer.write(data)
                    # One request in flight per connection keeps the buffer tiny; only drain
                    # when the body was large enough to back up the transport.
                    if writer.transport.get_write_buffer_size() > 65536:
                        await writer.drain()
                    status, keep, reply = await read_response(reader, method == "HEAD", keep_body)
                    t_end = perf()
                except (OSError, EOFError, ValueError, asyncio.LimitOverrunError, ProtocolError):
                    # OSError covers resets and connect timeouts, EOFError a short read,
                    # ValueError an unparsable number in the response head.
                    slot[0] = False
                    if measured:
                        self.errors += 1
                    if conn is not None:
                        conn[1].close()
                        conn = None
                    else:
                        # Connect failed: back off so a dead server does not burn the budget.
                        await asyncio.sleep(min(backoff, max(0.0, deadline - perf())))
                        backoff = min(backoff * 2, 0.5)
                    continue
                slot[0] = False
                if measured:
                    self.completed += 1
                    latencies.append(t_end - t_start)
                    status_counts[status] = status_counts.get(status, 0) + 1
                    if on_response is not None:
                        on_response(i, status, reply)
                if not keep:
                    writer.close()
                    conn = None
        finally:
            if conn is not None:
                conn[1].close()

    def dropped(self) -> int:
        """Measured open-mode slots that were never sent because the run was stopped."""
        if self.mode != "open":
            return 0
        last = min(self.max_requests, self.first_slot_at(self.deadline))
        first = max(self.next_index, self.first_slot_at(self.measure_from))
        return max(0, last - first)

    def result(self, end: float) -> LoadResult:
        """Summarise counters and latencies."""
        elapsed = max(end - self.measure_from, 1e-9)
        lat = sorted(x * 1000.0 for x in self.latencies)
        pcts = {name: percentile(lat, p) for name, p in PERCENTILES}
        return LoadResult(
            mode=self.mode,
            connections=self.connections,
            offered_rate=self.rate,
            duration_s=self.duration_s,
            warmup_s=self.warmup_s,
            sent=self.sent,
            completed=self.completed,
            errors=self.errors,
            timeouts=self.timeouts,
            dropped=self.dropped(),
            status_counts=dict(self.status_counts),
            elapsed_s=elapsed,
            throughput=self.completed / elapsed,
            min_ms=lat[0] if lat else 0.0,
            mean_ms=sum(lat) / len(lat) if lat else 0.0,
            max_ms=lat[-1] if lat else 0.0,
            latencies_ms=lat,
            **pcts,
        )


async def run_load(
    host: str,
    port: int,
    make_request: MakeRequest,
    *,
    mode: Mode = "closed",
    connections: int = 32,
    duration_s: float = 5.0,
    max_requests: int = 1_000_000,
    rate: float | None = None,
    warmup_s: float = 0.0,
    grace_s: float = 5.0,
    connect_timeout_s: float = 5.0,
    on_response: OnResponse | None = None,
) -> LoadResult:
    """Drive host:port for warmup_s + duration_s (at most max_requests requests in all);
    `on_response`, when given, sees every measured response with its body."""
    run = _Run(
        host,
        port,
        make_request,
        mode=mode,
        connections=connections,
        duration_s=duration_s,
        max_requests=max_requests,
        rate=rate,
        warmup_s=warmup_s,
        connect_timeout_s=connect_timeout_s,
        on_response=on_response,
    )
    # Connect before the clock starts so handshakes do not pollute the first latencies; a
    # failed connection is retried (and counted) by its worker on its first request.
    opened = await asyncio.gather(
        *(run.connect() for _ in range(connections)), return_exceptions=True
    )
    conns = [c if isinstance(c, tuple) else None for c in opened]
    run.start = time.perf_counter()
    run.measure_from = run.start + warmup_s
    run.deadline = run.measure_from + duration_s
    slots = [[False] for _ in range(connections)]
    tasks = [asyncio.ensure_future(run.worker(c, s)) for c, s in zip(conns, slots, strict=True)]
    try:
        # Requests already in flight at the deadline get grace_s to finish, then count as
        # timeouts, so a stalled server cannot hold the run open.
        await asyncio.wait(tasks, timeout=max(0.0, run.deadline + grace_s - time.perf_counter()))
        end = time.perf_counter()
        run.timeouts += sum(1 for s in slots if s[0])
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        # A worker only fails on a caller bug (e.g. make_request raised); surface it.
        if isinstance(outcome, Exception):
            raise outcome
    return run.result(end)


def run_load_sync(host: str, port: int, make_request: MakeRequest, **kwargs: Any) -> LoadResult:
    """run_load on a fresh uvloop event loop (falls back to asyncio if uvloop is missing)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_load(host, port, make_request, **kwargs))
    return uvloop.run(run_load(host, port, make_request, **kwargs))


def fixed_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> MakeRequest:
    """A make_request that returns the same request every time."""
    spec: RequestSpec = (method, path, body, dict(headers or {}))
    return lambda _i: spec


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1", choices=sorted(ALLOWED_HOSTS))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--method", default="GET")
    p.add_argument("--body", default="", help="request body (Content-Type defaults to JSON)")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    p.add_argument("--mode", choices=("closed", "open"), default="closed")
    p.add_argument("-c", "--connections", type=int, default=32)
    p.add_argument("-d", "--duration", type=float, default=5.0, help="seconds, after warmup")
    p.add_argument("-n", "--max-requests", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=None, help="offered req/s (open mode)")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds excluded from stats")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run once and print the result as JSON."""
    import json

    args = _parse_args(argv)
    headers: dict[str, str] = {}
    for raw in args.header:
        name, sep, value = raw.partition(":")
        if not sep:
            raise SystemExit(f"bad header {raw!r}, expected 'Name: value'")
        headers[name.strip()] = value.strip()
    body = args.body.encode()
    if body and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    result = run_load_sync(
        args.host,
        args.port,
        fixed_request(args.method.upper(), args.path, body, headers),
        mode=args.mode,
        connections=args.connections,
        duration_s=args.duration,
        max_requests=args.max_requests,
        rate=args.rate,
        warmup_s=args.warmup,
    )
    json.dump(result.as_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
