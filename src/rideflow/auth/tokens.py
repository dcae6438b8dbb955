"""Access tokens: short-lived JWTs (PyJWT, HS256) with `sub`, `role`, `jti`, `iat`, `exp`,
`iss`, `aud`. Verifying one costs no I/O: it is the check every request pays."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt

from rideflow.auth.principal import Principal, Role
from rideflow.config import Settings
from rideflow.errors import Unauthorized

if TYPE_CHECKING:
    from rideflow.auth.revocations import Revocations

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
        self._verified: dict[str, tuple[Principal, float, float]] = {}
        """Token -> (caller, valid until, issued at), for tokens verified before."""
        self.revocations: Revocations | None = None
        """Accounts whose tokens issued until a time are refused (set by a process that reads
        them: the API)."""

    def issue(self, subject: str, role: Role, *, ttl_s: int | None = None) -> Issued:
        now = time.time()
        ttl = self.ttl_s if ttl_s is None else ttl_s
        jti = secrets.token_urlsafe(12)
        claims = {
            "sub": subject,
            "role": role.value,
            "jti": jti,
            # To the millisecond (a NumericDate may have a fraction): a login just after its
            # account's tokens were revoked (a password reset) must not fall in the same second.
            "iat": round(now, 3),
            "exp": int(now) + ttl,
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
        if seen is None or time.time() >= seen[1]:
            if seen is not None:
                del self._verified[token]
            seen = self._decode(token)
            if len(self._verified) >= CACHED_TOKENS:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[token] = seen
        principal, _, issued_at = seen
        if self.revocations is not None and self.revocations.refused(principal.subject, issued_at):
            raise Unauthorized(
                "the access token was revoked (the account was disabled or its password "
                "reset); log in again"
            )
        return principal

    def decode(self, token: str) -> tuple[Principal, float]:
        """`verify` without the memory or revocations: the caller and when (epoch s) the token
        stops being valid (its `exp` plus the leeway)."""
        principal, expires, _ = self._decode(token)
        return principal, expires

    def _decode(self, token: str) -> tuple[Principal, float, float]:
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
        return principal, float(claims["exp"]) + self.leeway_s, float(claims["iat"])


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
