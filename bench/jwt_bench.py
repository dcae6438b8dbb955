"""Figure 16: what checking an access token adds to a request.

(a) End to end: `bench/jwt_app.py`, one uvicorn process (uvloop, httptools, as `rideflow api`
serves) with two routes identical but for the check, `GET /open` and `GET /auth` (RideFlow's
`AnyCaller`); both requests carry the same `Authorization` header, so they differ only in the
check. One request at a time on one keep-alive connection (closed loop: no timer granularity in
the latencies), the routes measured strictly alternately, several rounds; the added latency is
the median of the rounds' p50 with the check minus the median without.
(b) In process: a token's first check (`AccessTokens.decode`, nothing remembered) in a loop over
1,000 distinct tokens; the median over rounds of each round's mean per call, and every call timed
on its own for percentiles; then the check of tokens seen before (`verify`).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import httpx

from bench.harness import (
    HOST,
    WARMUP_S,
    Figure,
    Processes,
    Server,
    access_token,
    access_tokens,
    auth_headers,
    brief,
    failures,
    free_port,
    latency_summary,
    rideflow_env,
    say,
    wait_http,
)
from bench.loadgen import LoadResult, fixed_request, run_load
from rideflow.auth.principal import Role

ROUNDS = 5
DURATION_S = 3.0
MAX_REQUESTS = 60_000
VERIFY_ROUNDS = 7
VERIFY_CALLS = 20_000
VERIFY_TOKENS = 1000
VERIFY_WARM_CALLS = 2000
TARGET_MS = 0.1
UNUSED_REDIS = "redis://127.0.0.1:1/0"
"""The app touches no Redis; the environment wants a URL."""


async def start_jwt_app(procs: Processes) -> Server:
    """`bench.jwt_app` under uvicorn, ready."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.jwt_app:create_app", "--factory"]
    argv += ["--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    argv += ["--no-access-log", "--log-level", "warning"]
    server = procs.start("jwt-app", argv, rideflow_env(UNUSED_REDIS), port)
    await wait_http(server)
    return server


async def check_routes(server: Server, headers: dict[str, str]) -> None:
    """`/auth` answers 200 with the token and 401 without; `/open` 200 either way."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=5) as client:
        codes = (
            (await client.get("/auth", headers=headers)).status_code,
            (await client.get("/auth")).status_code,
            (await client.get("/open", headers=headers)).status_code,
        )
    if codes != (200, 401, 200):
        raise RuntimeError(f"jwt app: /auth with, /auth without, /open gave {codes}")


async def sequential(server: Server, path: str, headers: dict[str, str]) -> LoadResult:
    """One request at a time against `path`."""
    result = await run_load(
        HOST,
        server.port,
        fixed_request("GET", path, headers=headers),
        mode="closed",
        connections=1,
        duration_s=DURATION_S,
        warmup_s=WARMUP_S,
        max_requests=MAX_REQUESTS,
    )
    say(f"  GET {path}: {brief(result, 200)}")
    return result


async def end_to_end(procs: Processes) -> dict[str, Any]:
    """The two routes measured alternately, ROUNDS rounds each."""
    server = await start_jwt_app(procs)
    headers = auth_headers(Role.CUSTOMER, "rider-bench")
    runs: dict[str, list[LoadResult]] = {"checked": [], "unchecked": []}
    try:
        await check_routes(server, headers)
        for _ in range(ROUNDS):
            runs["unchecked"].append(await sequential(server, "/open", headers))
            runs["checked"].append(await sequential(server, "/auth", headers))
    finally:
        procs.stop(server)
    p50 = {side: statistics.median(r.p50_ms for r in rs) for side, rs in runs.items()}
    pairs = zip(runs["checked"], runs["unchecked"], strict=True)
    return {
        "p50_checked_ms": round(p50["checked"], 4),
        "p50_unchecked_ms": round(p50["unchecked"], 4),
        "added_ms": round(p50["checked"] - p50["unchecked"], 4),
        "round_differences_ms": [round(a.p50_ms - b.p50_ms, 4) for a, b in pairs],
        "not_200": sum(failures(r, 200) for rs in runs.values() for r in rs),
        "runs": {side: [r.as_dict() for r in rs] for side, rs in runs.items()},
    }


def verify_in_process() -> dict[str, Any]:
    """A token's first check (`AccessTokens.decode`: nothing remembered) in a loop, per-round
    means, then each call timed on its own; and the checks after the first (`verify` of a token
    it has seen), which is what a client's later requests cost."""
    tokens = access_tokens()
    minted = [access_token(Role.CUSTOMER, f"rider-{i}") for i in range(VERIFY_TOKENS)]
    for i in range(VERIFY_WARM_CALLS):
        tokens.decode(minted[i % VERIFY_TOKENS])
    rounds_us: list[float] = []
    for _ in range(VERIFY_ROUNDS):
        started = time.perf_counter_ns()
        for i in range(VERIFY_CALLS):
            tokens.decode(minted[i % VERIFY_TOKENS])
        rounds_us.append((time.perf_counter_ns() - started) / VERIFY_CALLS / 1000)
    times_ms: list[float] = []
    for i in range(VERIFY_CALLS):
        token = minted[i % VERIFY_TOKENS]
        t0 = time.perf_counter_ns()
        tokens.decode(token)
        times_ms.append((time.perf_counter_ns() - t0) / 1e6)
    for token in minted:
        tokens.verify(token)
    started = time.perf_counter_ns()
    for i in range(VERIFY_CALLS):
        tokens.verify(minted[i % VERIFY_TOKENS])
    warm_us = (time.perf_counter_ns() - started) / VERIFY_CALLS / 1000
    return {
        "median_round_us": round(statistics.median(rounds_us), 2),
        "rounds_us": [round(r, 2) for r in rounds_us],
        "per_call": latency_summary(times_ms),
        "seen_before_us": round(warm_us, 2),
    }


async def figure_jwt(procs: Processes) -> Figure:
    """End to end and in process; both judged against the target."""
    e2e = await end_to_end(procs)
    say(f"  added p50 {e2e['added_ms']:.4f} ms (rounds {e2e['round_differences_ms']})")
    calls = verify_in_process()
    say(f"  verify: median {calls['median_round_us']} us per call (rounds {calls['rounds_us']})")
    figure = Figure(raw={"end_to_end": e2e, "verify": calls})
    rounds = ", ".join(f"{d:+.3f}" for d in e2e["round_differences_ms"])
    figure.cells["jwt_added"] = (
        f"{e2e['added_ms']:+.3f} ms (p50 {e2e['p50_checked_ms']:.3f} ms checked vs"
        f" {e2e['p50_unchecked_ms']:.3f} ms unchecked; rounds {rounds}; {e2e['not_200']} not 200)",
        e2e["added_ms"] <= TARGET_MS and e2e["not_200"] == 0,
    )
    per_call = calls["per_call"]
    figure.cells["jwt_verify"] = (
        f"first check of a token {calls['median_round_us'] / 1000:.4f} ms per call (median of"
        f" {VERIFY_ROUNDS} rounds of {VERIFY_CALLS:,}; timed one by one: p50"
        f" {per_call['p50_ms']:.4f}, p99 {per_call['p99_ms']:.4f} ms); a token seen before"
        f" {calls['seen_before_us'] / 1000:.4f} ms",
        calls["median_round_us"] / 1000 <= TARGET_MS,
    )
    return figure


def jwt_note() -> str:
    """Figure 16's paragraph of the method."""
    return (
        f"16. **JWT check.** (a) `bench/jwt_app.py` under uvicorn (uvloop, httptools): `GET /open`"
        f" and `GET /auth`, identical but for RideFlow's `AnyCaller` on the second (FastAPI's"
        f" caller dependency reading the bearer token, then `AccessTokens.verify`, HS256 with"
        f" issuer, audience and required claims, its verdict remembered until the token"
        f" expires); both requests carry the same CUSTOMER token, as a client's requests do."
        f" One request at a time on one connection, the routes alternately, {ROUNDS} rounds of"
        f" {WARMUP_S:g} s warmup + {DURATION_S:g} s each; the added latency is the median p50"
        f" with the check minus the median p50 without. (b) A token's first check"
        f" (`AccessTokens.decode`, nothing remembered) in this process over {VERIFY_TOKENS:,}"
        f" distinct tokens: {VERIFY_ROUNDS} rounds of {VERIFY_CALLS:,} calls (the median of the"
        f" rounds' mean per call), then {VERIFY_CALLS:,} calls timed one by one; and the mean of"
        f" {VERIFY_CALLS:,} checks of tokens seen before (`verify`). In RideFlow the check runs"
        f" once per request: in the rate-limit middleware when limits are on (the route reuses"
        f" the caller it leaves in the request's scope), in the route's caller dependency"
        f" otherwise."
    )
