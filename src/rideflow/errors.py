"""Domain errors that carry their HTTP meaning; `rideflow.api.problems` renders them as
RFC 9457 `application/problem+json`. Free of any web framework."""

from __future__ import annotations

from typing import Any


class RideflowError(Exception):
    """An error a client can act on; subclasses fix the status and title."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Unauthorized(RideflowError):
    """No credentials, or credentials that are not valid: the client must (re)authenticate."""

    status = 401
    title = "Unauthorized"


class Forbidden(RideflowError):
    """Valid credentials of a caller who may not do this."""

    status = 403
    title = "Forbidden"


class NotFound(RideflowError):
    status = 404
    title = "Not found"


class Conflict(RideflowError):
    status = 409
    title = "Conflict"


class TooManyRequests(RideflowError):
    """Too many attempts of something guarded (logins): wait `retry_after_s` seconds."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: int, **extra: Any) -> None:
        # `retry_after` in the extras becomes the Retry-After header (and a body member).
        super().__init__(detail, retry_after=max(1, retry_after_s), **extra)


class NoDriverFound(RideflowError):
    """A synchronous dispatch found no available driver within the radius."""

    status = 404
    title = "No driver found"


class Unprocessable(RideflowError):
    """Valid JSON that the domain refuses; `field` names the offending input."""

    status = 422
    title = "Unprocessable request"

    def __init__(self, detail: str, *, field: str, **extra: Any) -> None:
        super().__init__(detail, errors=[{"field": field, "reason": detail}], **extra)
