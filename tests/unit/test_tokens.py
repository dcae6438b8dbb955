"""Access tokens and the signing secret: what verifies and what is refused, without I/O."""

from __future__ import annotations

import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest

from rideflow.auth.principal import Role
from rideflow.auth.secret import WeakSecret, jwt_secret
from rideflow.auth.tokens import AccessTokens
from rideflow.config import Settings
from rideflow.errors import Unauthorized

SECRET = b"k" * 32


def tokens(**overrides: object) -> AccessTokens:
    return AccessTokens(Settings(**overrides), SECRET)  # type: ignore[arg-type]


def claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "u1",
        "role": "CUSTOMER",
        "jti": "j1",
        "iat": now,
        # Built at collection: a long suite can reach a test minutes later.
        "exp": now + 3600,
        "iss": "rideflow",
        "aud": "rideflow-api",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_an_issued_token_verifies_as_its_subject_and_role() -> None:
    t = tokens()
    issued = t.issue("u42", Role.DRIVER)
    principal = t.verify(issued.token)
    assert (principal.subject, principal.role, principal.kind) == ("u42", Role.DRIVER, "user")
    assert principal.token_id == issued.jti and issued.expires_in == 900
    decoded = jwt.decode(issued.token, SECRET, algorithms=["HS256"], audience="rideflow-api")
    assert set(decoded) == {"sub", "role", "jti", "iat", "exp", "iss", "aud"}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (jwt.encode(claims(), b"o" * 32, algorithm="HS256"), "bad signature"),
        (jwt.encode(claims(aud="elsewhere"), SECRET, algorithm="HS256"), "wrong audience"),
        (jwt.encode(claims(iss="someone"), SECRET, algorithm="HS256"), "wrong issuer"),
        (jwt.encode(claims(jti=None), SECRET, algorithm="HS256"), "missing claim jti"),
        (jwt.encode(claims(role="ROOT"), SECRET, algorithm="HS256"), "unknown role"),
        (jwt.encode(claims(), None, algorithm="none"), "algorithm not allowed"),
        (jwt.encode(claims(), SECRET * 2, algorithm="HS512"), "algorithm not allowed"),
        ("not.a.jwt", "malformed"),
    ],
)
def test_tokens_not_ours_are_refused_with_the_reason(token: str, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        tokens().verify(token)


def test_an_expired_token_says_so() -> None:
    old = jwt.encode(claims(iat=1, exp=100), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="expired"):
        tokens().verify(old)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        AccessTokens(Settings(), b"short")


def test_production_refuses_to_start_without_a_strong_secret(tmp_path: Path) -> None:
    with pytest.raises(WeakSecret, match="production"):
        jwt_secret(Settings(env="production", data_dir=str(tmp_path)))
    with pytest.raises(WeakSecret, match="at least 32"):
        jwt_secret(Settings(env="production", jwt_secret="tooshort"))
    assert jwt_secret(Settings(env="production", jwt_secret="s" * 40)) == b"s" * 40
    assert not (tmp_path / "jwt-secret").exists()


def test_development_makes_one_private_secret_that_every_process_shares(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "var"))
    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda _: jwt_secret(settings), range(32)))
    assert len(secrets) == 1 and len(secrets.pop()) >= 32
    path = tmp_path / "var" / "jwt-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["jwt-secret"]  # no temp file left


def test_a_verified_token_is_remembered_until_it_expires() -> None:
    t = tokens(jwt_leeway_s=0)
    issued = t.issue("u7", Role.CUSTOMER, ttl_s=1)
    first = t.verify(issued.token)
    assert t.verify(issued.token) is first  # the verdict remembered, not decoded again
    expires = jwt.decode(issued.token, options={"verify_signature": False})["exp"]
    while time.time() < expires + 0.05:  # the token's own expiry: the clock is the condition
        time.sleep(0.01)
    with pytest.raises(Unauthorized, match="expired"):
        t.verify(issued.token)
    with pytest.raises(Unauthorized, match="bad signature"):  # a forgery is never remembered
        t.verify(issued.token[:-2] + ("AA" if issued.token[-2:] != "AA" else "BB"))
