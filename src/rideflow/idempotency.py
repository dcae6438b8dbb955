"""Idempotent creation: what an `Idempotency-Key` is bound to, and how long it is kept."""

from __future__ import annotations

import hashlib

import orjson

from rideflow.errors import Unprocessable

IDEMPOTENCY_TTL_S = 86_400


def fingerprint(body: object) -> str:
    """What an idempotency key is bound to: the validated request it first came with, keys
    sorted so that the same request written in another order is still the same request."""
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        # Bodies are validated to serialise (see `JobSubmit.payload`); a request that still
        # cannot is refused rather than stored under a key it cannot be bound to.
        raise Unprocessable(f"cannot be bound to an Idempotency-Key: {exc}", field="body") from exc
    return hashlib.sha256(canonical).hexdigest()[:32]
