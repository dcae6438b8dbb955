"""Access tokens: short-lived JWTs (PyJWT, HS256) with `sub`, `role`, `jti`, `iat`, `exp`,
`iss`, `aud`. Verifying one costs no I/O: it is the check every request pays."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from rideflow.auth.principal import Principal, Role
from rideflow.config import Settings
from rideflow.errors import Unauthorized

ALGORITHM = "HS256"
CACHED_TOKENS = 16_384
"""Tokens verified before that a process keeps the verdict of (each about half a KiB)."""
REQUIRED = ["sub", "role", "jti", "iat", "exp", "iss", "aud"]


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    jti: str
    expires_in: int


class AccessTokens:
    """Issues and verifies access tokens with one secret."""

    def __init__(self, settings: Settings, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes")
        self.secret = secret
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.ttl_s = settings.access_token_ttl_s
        self.leeway_s = settings.jwt_leeway_s
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, subject: str, role: Role, *, ttl_s: int | None = None) -> Issued:
        now = int(time.time())
        ttl = self.ttl_s if ttl_s is None else ttl_s
        jti = secrets.token_urlsafe(12)
        claims = {
            "sub": subject,
            "role": role.value,
            "jti": jti,
            "iat": now,
            "exp": now + ttl,
            "iss": self.issuer,
            "aud": self.audience,
        }
        return Issued(jwt.encode(claims, self.secret, algorithm=ALGORITHM), jti, ttl)

    def verify(self, token: str) -> Principal:
        """The caller the token names; `Unauthorized` for anything but a valid, unexpired token
        of ours (another key, another audience or issuer, `alg: none`, a missing claim).

        A token verified before is answered from memory until it expires: a client sends the
        same token with every request for its lifetime, and decoding it again (base64, JSON,
        HMAC, the claims) was most of what the check cost. The same string with the same
        signature is the same verdict; only its expiry moves, and that is checked each time."""
        seen = self._verified.get(token)
        if seen is not None:
            principal, expires = seen
            if time.time() < expires:
                return principal
            del self._verified[token]
        principal, expires = self.decode(token)
        if len(self._verified) >= CACHED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (principal, expires)
        return principal

    def decode(self, token: str) -> tuple[Principal, float]:
        """`verify` without the memory: the caller and when (epoch s) the token stops being
        valid (its `exp` plus the leeway)."""
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": REQUIRED},
            )
            role = Role(claims["role"])
            subject = claims["sub"]
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired; refresh it") from None
        except (jwt.InvalidTokenError, ValueError, KeyError) as exc:
            raise Unauthorized(f"the access token is not valid ({_reason(exc)})") from None
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("the access token is not valid (no subject)")
        principal = Principal(subject=subject, role=role, kind="user", token_id=str(claims["jti"]))
        return principal, float(claims["exp"]) + self.leeway_s


def _reason(exc: Exception) -> str:
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim}"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "algorithm not allowed"
    if isinstance(exc, jwt.DecodeError):
        return "malformed"
    if isinstance(exc, ValueError | KeyError):
        return "unknown role"
    return type(exc).__name__
