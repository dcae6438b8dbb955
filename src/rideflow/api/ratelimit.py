"""Rate limits per client under per-route policies: fixed window, sliding window and token bucket,
each one atomic Lua call on Redis time, reported with the IETF RateLimit headers.

A client is a user (`user:<subject>`, from a verified access token) or an address
(`ip:<addr>`); a user's limits are their role's (`rate_role_multipliers`)."""

from __future__ import annotations

import itertools
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple

from rideflow.auth.principal import Principal, Role
from rideflow.config import RatePolicy, Settings
from rideflow.metrics.families import rate_decision
from rideflow.redis import keys
from rideflow.redis.scripts import Scripts


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one hit; times are whole seconds, as the headers carry them."""

    name: str
    policy: RatePolicy
    allowed: bool
    remaining: int
    reset_s: int
    retry_after_s: int

    def headers(self) -> list[tuple[str, str]]:
        """`RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers), and
        `Retry-After` when refused."""
        p = self.policy
        out = [
            ("RateLimit-Policy", f'"{self.name}";q={p.limit};w={math.ceil(p.window_s)}'),
            ("RateLimit", f'"{self.name}";r={self.remaining};t={self.reset_s}'),
        ]
        if not self.allowed:
            out.append(("Retry-After", str(self.retry_after_s)))
        return out


class Verdict(NamedTuple):
    """A rate-limit script's reply; times in ms."""

    allowed: bool
    remaining: int
    reset_ms: int
    retry_ms: int


def parse_verdict(reply: list[Any]) -> Verdict:
    """`rate_*.lua`'s `{allowed 0/1, remaining, reset ms, retry-after ms}`, typed."""
    allowed, remaining, reset_ms, retry_ms = reply
    return Verdict(allowed == 1, int(remaining), int(reset_ms), int(retry_ms))


def client_key(caller: Principal | None, address: str) -> str:
    """Who a request is counted as: an account by its subject, anything else by its address (an
    API key's back end too: its key is not looked up before routing)."""
    if caller is not None and caller.kind == "user":
        return f"user:{caller.subject}"
    return f"ip:{address}"


def scaled(policy: RatePolicy, factor: float) -> RatePolicy:
    """`policy` with its limit (and burst) times `factor`, never below 1."""
    if factor == 1:
        return policy
    burst = None if policy.burst is None else max(1, math.ceil(policy.burst * factor))
    return policy.model_copy(
        update={"limit": max(1, math.ceil(policy.limit * factor)), "burst": burst}
    )


def _route_pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^/{}]+\})", path)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


class RateLimiter:
    """Finds the policy of a route and counts a client's hits against it."""

    def __init__(self, scripts: Scripts, settings: Settings) -> None:
        self.scripts = scripts
        self.policies = settings.rate_policies
        self.role_policies = {
            (name, role): scaled(policy, settings.rate_role_multipliers.get(role, 1.0))
            for name, policy in self.policies.items()
            for role in Role
        }
        self.default = settings.rate_default_policy
        self.routes = [
            (r.method.upper(), _route_pattern(r.path), r.policy) for r in settings.rate_routes
        ]
        self._members = (f"{secrets.token_hex(4)}-{n}" for n in itertools.count())

    def policy_for(self, method: str, path: str) -> str | None:
        """The name of the policy guarding a request, if any."""
        for route_method, pattern, name in self.routes:
            if route_method in ("*", method) and pattern.match(path):
                return name
        return self.default

    def policy(self, name: str, role: Role | None = None) -> RatePolicy:
        """Policy `name` as it applies to a caller of `role` (None: anonymous, the policy)."""
        return self.policies[name] if role is None else self.role_policies[name, role]

    async def hit(
        self,
        name: str,
        client: str,
        role: Role | None = None,
        *,
        policy: RatePolicy | None = None,
    ) -> Decision:
        """Count one hit of `client` (of `role`, if a user) under policy `name`, or under
        `policy`, named `name`, for limits kept outside the route policies (logins); admitting
        it or not."""
        policy = policy or self.policy(name, role)
        key = keys.rate_limit(name, client)
        window_ms = max(1, int(policy.window_s * 1000))
        if policy.algorithm == "fixed_window":
            reply = await self.scripts.rate_fixed_window(keys=[key], args=[policy.limit, window_ms])
        elif policy.algorithm == "sliding_window":
            reply = await self.scripts.rate_sliding_window(
                keys=[key], args=[policy.limit, window_ms, next(self._members)]
            )
        else:
            reply = await self.scripts.rate_token_bucket(
                keys=[key], args=[policy.limit, window_ms, policy.burst or policy.limit]
            )
        verdict = parse_verdict(reply)
        rate_decision(name, verdict.allowed)
        return Decision(
            name,
            policy,
            verdict.allowed,
            verdict.remaining,
            math.ceil(verdict.reset_ms / 1000),
            math.ceil(verdict.retry_ms / 1000),
        )
