"""Idempotent creation: what an `Idempotency-Key` is bound to, and how long it is kept."""

from __future__ import annotations

import hashlib

import orjson

IDEMPOTENCY_TTL_S = 86_400


def fingerprint(body: object) -> str:
    """What an idempotency key is bound to: the request it first came with."""
    return hashlib.sha256(orjson.dumps(body)).hexdigest()[:32]
