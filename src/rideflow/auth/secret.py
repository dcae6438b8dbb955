"""The JWT signing secret: `RIDEFLOW_JWT_SECRET`, or for development one generated once into
`<data_dir>/jwt-secret` (mode 0600) and shared by every process on the machine. With
`RIDEFLOW_ENV=production` a process refuses to start without a strong configured secret."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from rideflow.config import Settings

MIN_BYTES = 32
FILE = "jwt-secret"


class WeakSecret(RuntimeError):
    pass


def jwt_secret(settings: Settings) -> bytes:
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value().encode()
        if len(secret) < MIN_BYTES:
            raise WeakSecret(
                f"RIDEFLOW_JWT_SECRET must be at least {MIN_BYTES} bytes "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return secret
    if settings.env == "production":
        raise WeakSecret(
            "RIDEFLOW_ENV=production needs RIDEFLOW_JWT_SECRET (at least 32 random bytes); "
            "a generated development secret is refused"
        )
    return _development_secret(Path(settings.data_dir))


def _development_secret(directory: Path) -> bytes:
    """The machine's development secret, made by whichever process comes first: written whole
    to a file of its own, then linked into place (a link never replaces an existing file, so
    processes starting together agree on one, and none reads a half-written secret)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{FILE}.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_urlsafe(48).encode() + b"\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    secret = path.read_bytes().strip()
    if len(secret) < MIN_BYTES:
        raise WeakSecret(f"{path} holds no usable secret; delete it to make a new one")
    return secret
