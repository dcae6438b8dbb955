"""The WebSocket protocol of `/v1/ws`: JSON messages `{type, id, data}` both ways, the close
codes, and the conversions of stream entries into messages. Pure: no socket, no Redis."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson
from pydantic import ValidationError

from rideflow.errors import RideflowError
from rideflow.redis.clock import from_ms, from_us

SUBPROTOCOL = "rideflow.v1"
"""The subprotocol the server selects; a client offers it with `bearer.<access token>`."""
BEARER_PREFIX = "bearer."
MAX_ID_LENGTH = 128


class Close(IntEnum):
    """Close codes the gateway uses (RFC 6455 ones, then its own in the 4000 range)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """The API process is shutting down: reconnect (to another)."""
    TRY_AGAIN_LATER = 1013
    """The client fell behind: its send queue filled up. Reconnect and resume with `after`."""
    UNAUTHORIZED = 4401
    """No valid access token (where the server cannot refuse before the upgrade), or the
    account's tokens were revoked (disabled, password reset) while its socket was open."""
    FORBIDDEN = 4403
    """A caller the socket does not serve (a back end's API key, say)."""
    HEARTBEAT = 4408
    """Two pings went unanswered; a driver is taken offline then."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message from the client."""

    type: str
    id: str | int | None
    data: dict[str, Any]


class BadMessage(RideflowError):
    """A frame that is not a message of this protocol."""

    status = 422
    title = "Invalid message"


def parse(text: str | bytes) -> Inbound:
    """A client's frame as a message, or `BadMessage` naming what is wrong."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _bad("message", "the message is not valid JSON") from None
    if not isinstance(raw, dict):
        raise _bad("message", "a message is a JSON object {type, id, data}")
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise _bad("type", "`type` must be a non-empty string")
    mid = raw.get("id")
    if mid is not None and not (
        (isinstance(mid, str) and len(mid) <= MAX_ID_LENGTH)
        or (isinstance(mid, int) and not isinstance(mid, bool))
    ):
        raise _bad("id", f"`id` must be a string of at most {MAX_ID_LENGTH} characters or an int")
    data = raw.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _bad("data", "`data` must be a JSON object")
    return Inbound(kind, mid, data)


def _bad(field: str, reason: str) -> BadMessage:
    return BadMessage(reason, errors=[{"field": field, "reason": reason}])


def encode(kind: str, mid: str | int | None, data: Any) -> str:
    """One outbound message as text."""
    return orjson.dumps({"type": kind, "id": mid, "data": data}).decode()


def ack(mid: str | int | None, data: Any) -> str:
    return encode("ack", mid, data)


def problem_of(exc: Exception) -> dict[str, Any]:
    """Problem-like data (RFC 9457 fields) for an error reply."""
    if isinstance(exc, RideflowError):
        return {
            "type": "about:blank",
            "title": exc.title,
            "status": exc.status,
            "detail": exc.detail,
            **exc.extra,
        }
    if isinstance(exc, ValidationError):
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "data", "reason": e["msg"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return {
            "type": "about:blank",
            "title": "Invalid request",
            "status": 422,
            "detail": detail,
            "errors": errors,
        }
    return {
        "type": "about:blank",
        "title": "Internal server error",
        "status": 500,
        "detail": "the server failed to handle this message; it has been logged",
    }


def error(mid: str | int | None, exc: Exception) -> str:
    return encode("error", mid, problem_of(exc))


def event_data(city: str, fields: dict[str, str]) -> dict[str, Any]:
    """An order's transition as sockets see it (the fields `GET /v1/rides/{id}/events` shows,
    plus the order and the city; nothing else the stream entry carries)."""
    data: dict[str, Any] = {
        "order_id": fields.get("order", ""),
        "city": city,
        "status": fields.get("status", ""),
        "at": from_us(fields["at"]).isoformat() if fields.get("at") else None,
        "driver_id": fields.get("driver") or None,
        "offer_id": fields.get("offer") or None,
    }
    if fields.get("pickup_m"):
        data["pickup_distance_m"] = float(fields["pickup_m"])
    if fields.get("reason"):
        data["reason"] = fields["reason"]
    if fields.get("outcome"):
        data["outcome"] = fields["outcome"]
    return data


@dataclass(frozen=True, slots=True)
class Fix:
    """A tracked driver's position, as published by `driver_positions.lua`."""

    driver_id: str
    order_id: str
    lat: float
    lng: float
    at_ms: int

    def data(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "driver_id": self.driver_id,
            "lat": self.lat,
            "lng": self.lng,
            "recorded_at": from_ms(self.at_ms).isoformat(),
        }


def parse_fix(text: str) -> Fix | None:
    """`driver|order|lat|lng|fix ms`, or None for anything else."""
    parts = text.split("|")
    if len(parts) != 5:
        return None
    try:
        return Fix(parts[0], parts[1], float(parts[2]), float(parts[3]), int(parts[4]))
    except ValueError:
        return None


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
