"""Conversions between Redis-side epoch integers and UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime


def from_us(value: str | int) -> datetime:
    """A UTC datetime from epoch microseconds."""
    return datetime.fromtimestamp(int(value) / 1_000_000, tz=UTC)


def from_ms(value: str | int | float) -> datetime:
    """A UTC datetime from epoch milliseconds."""
    return datetime.fromtimestamp(float(value) / 1000, tz=UTC)


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of a datetime; a naive one is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)
